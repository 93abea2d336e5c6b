package engine

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

const dir = "db"

func open(t *testing.T, fsys FS, o Options) *Engine {
	t.Helper()
	o.FS = fsys
	e, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// bytesTo is a value to write.
type bytesTo []byte

func (b bytesTo) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(b)
	return int64(n), err
}

func values(kv ...string) []Write {
	var ws []Write
	for i := 0; i < len(kv); i += 2 {
		ws = append(ws, Write{Name: kv[i], Kind: ValueState, Parts: []io.WriterTo{bytesTo(kv[i+1])}})
	}
	return ws
}

func commit(t *testing.T, e *Engine, kv ...string) Snapshot {
	t.Helper()
	s, err := e.Commit(values(kv...), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// read returns the bytes of every location of ref, joined by "|".
func read(t *testing.T, e *Engine, ref Ref) string {
	t.Helper()
	var parts []string
	var err error
	locs(&ref, func(l *Loc) {
		var b []byte
		if err == nil {
			b, err = e.Read(*l)
			parts = append(parts, string(b))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(parts, "|")
}

// contents reads every state of snapshot id (0: the current one).
func contents(t *testing.T, e *Engine, id uint64) map[string]string {
	t.Helper()
	states, ok := e.States(id)
	if !ok {
		t.Fatalf("snapshot %d is not retained", id)
	}
	out := map[string]string{}
	for name, ref := range states {
		out[name] = read(t, e, ref)
	}
	return out
}

func files(t *testing.T, fsys FS) []string {
	t.Helper()
	names, err := fsys.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// segmentsInUse returns the segments the retained snapshots use.
func segmentsInUse(t *testing.T, e *Engine) map[uint64]bool {
	used := map[uint64]bool{}
	for _, s := range e.Snapshots() {
		states, _ := e.States(s.ID)
		for _, r := range states {
			locs(&r, func(l *Loc) { used[l.Segment] = true })
		}
	}
	return used
}

// rewrite replaces file name with fn of its contents, durably.
func rewrite(t *testing.T, fsys FS, name string, fn func([]byte) []byte) {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := fsys.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	size, _ := f.Size()
	data, err := vfs.ReadAll(f, size)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	data = fn(data)
	w, err := fsys.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	w.Sync()
	w.Close()
}

func flipAt(off int64) func([]byte) []byte {
	return func(b []byte) []byte {
		if off < 0 {
			off += int64(len(b))
		}
		b[off] ^= 0x20
		return b
	}
}

func TestCommitReopen(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{})
	if _, ok := e.Current(); ok {
		t.Fatal("a new DB has a snapshot")
	}
	s1 := commit(t, e, "a", "1", "b", "2")
	s2 := commit(t, e, "b", "3")
	a1, _ := e.Lookup(1, "a")
	a2, _ := e.Lookup(2, "a")
	b2, _ := e.Lookup(2, "b")
	if s1.ID != 1 || s2.ID != 2 || s2.States != 2 || !sameRef(&a1, &a2) || b2.Since != 2 {
		t.Fatalf("snapshots %+v %+v", s1, s2)
	}
	if s3, err := e.Commit(nil, nil); err != nil || s3 != s2 {
		t.Fatalf("empty commit: %+v %v", s3, err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Commit(nil, nil); !errors.Is(err, errs.ErrClosed) {
		t.Fatalf("commit after close: %v", err)
	}
	// A crash right now (only synced data) recovers everything.
	for _, fsys := range []*vfs.MemFS{m, m.CrashClone(vfs.CrashOptions{})} {
		e = open(t, fsys, Options{})
		if got := contents(t, e, 0); fmt.Sprint(got) != "map[a:1 b:3]" {
			t.Fatalf("reopened: %v", got)
		}
		if got := contents(t, e, 1); fmt.Sprint(got) != "map[a:1 b:2]" {
			t.Fatalf("snapshot 1 reopened: %v", got)
		}
		e.Close()
	}
}

func TestBadCommits(t *testing.T) {
	e := open(t, vfs.NewMem(), Options{})
	defer e.Close()
	commit(t, e, "a", "1")
	for name, c := range map[string]struct {
		w []Write
		d []string
	}{
		"twice":         {w: append(values("b", "1"), values("b", "2")...)},
		"drop unknown":  {d: []string{"zz"}},
		"drop written":  {w: values("a", "2"), d: []string{"a"}},
		"delta nowhere": {w: []Write{{Name: "m", Kind: MapState, Delta: true, Parts: []io.WriterTo{bytesTo("x")}}}},
		"delta value":   {w: []Write{{Name: "a", Kind: MapState, Delta: true, Parts: []io.WriterTo{bytesTo("x")}}}},
		"no parts":      {w: []Write{{Name: "m", Kind: MapState}}},
		"two values":    {w: []Write{{Name: "v", Kind: ValueState, Parts: []io.WriterTo{bytesTo("x"), bytesTo("y")}}}},
		"kind":          {w: []Write{{Name: "v", Parts: []io.WriterTo{bytesTo("x")}}}},
	} {
		if _, err := e.Commit(c.w, c.d); err == nil {
			t.Fatalf("%s: accepted", name)
		}
	}
	if s, _ := e.Current(); s.ID != 1 {
		t.Fatalf("a refused commit made snapshot %d", s.ID)
	}
}

func TestLocked(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{})
	defer e.Close()
	if _, err := Open(dir, Options{FS: m}); !errors.Is(err, errs.ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
	ro, err := Open(dir, Options{FS: m, ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open beside a writer: %v", err)
	}
	if _, err := ro.Commit(values("a", "x"), nil); !errors.Is(err, errs.ErrReadOnly) {
		t.Fatalf("read-only commit: %v", err)
	}
	ro.Close()
}

func TestNotADB(t *testing.T) {
	m := vfs.NewMem()
	m.MkdirAll(dir)
	if _, err := Open(dir, Options{FS: m, ReadOnly: true}); !errors.Is(err, errs.ErrNotDB) {
		t.Fatalf("read-only open of an empty directory: %v", err)
	}
	if _, err := Open("nowhere", Options{FS: m, ReadOnly: true}); err == nil || errors.Is(err, errs.ErrCorrupt) {
		t.Fatalf("read-only open of a missing directory: %v", err)
	}
}

func TestRetentionAndGC(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{Retain: 2})
	for i := 0; i < 6; i++ {
		commit(t, e, "a", fmt.Sprint(i), fmt.Sprintf("s%d", i), "x")
	}
	snaps := e.Snapshots()
	if len(snaps) != 2 || snaps[0].ID != 5 || snaps[1].ID != 6 {
		t.Fatalf("retained %v", snaps)
	}
	used := segmentsInUse(t, e)
	for _, n := range files(t, m) {
		if id, ok := segment.ParseFileName(n); ok && !used[id] {
			t.Fatalf("unused segment %s kept (files %v)", n, files(t, m))
		}
	}
	if got := contents(t, e, 5)["a"]; got != "4" {
		t.Fatalf("snapshot 5 a=%q", got)
	}
	e.Close()
}

// Drops remove a state from the new snapshot only; a commit of drops
// alone makes a snapshot.
func TestDrop(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{})
	commit(t, e, "a", "1", "b", "2")
	s, err := e.Commit(nil, []string{"a"})
	if err != nil || s.ID != 2 || s.States != 1 {
		t.Fatalf("drop: %+v %v", s, err)
	}
	e.Close()
	e = open(t, m, Options{})
	defer e.Close()
	if got := fmt.Sprint(contents(t, e, 0)); got != "map[b:2]" {
		t.Fatalf("after the drop: %s", got)
	}
	if got := fmt.Sprint(contents(t, e, 1)); got != "map[a:1 b:2]" {
		t.Fatalf("the snapshot before: %s", got)
	}
}

func TestOrphansRemoved(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{})
	commit(t, e, "a", "1")
	e.Close()
	for _, n := range []string{"000099.seg", "CURRENT.tmp", "MANIFEST-000050", "x.tmp", "notes.txt"} {
		f, _ := m.Create(filepath.Join(dir, n))
		f.Write([]byte("junk"))
		f.Close()
	}
	e = open(t, m, Options{})
	defer e.Close()
	if got := e.Report().Removed; !slices.Equal(got, []string{"000099.seg", "CURRENT.tmp", "MANIFEST-000050"}) {
		t.Fatalf("removed %v", got)
	}
	// Files that are not the engine's stay.
	if fs := files(t, m); !slices.Contains(fs, "x.tmp") || !slices.Contains(fs, "notes.txt") {
		t.Fatalf("a file not the engine's was removed: %v", fs)
	}
	if got := contents(t, e, 0); got["a"] != "1" {
		t.Fatalf("contents %v", got)
	}
	// A new segment does not reuse the orphan's number.
	commit(t, e, "a", "2")
	if r, _ := e.Lookup(0, "a"); r.Value.Segment <= 99 {
		t.Fatalf("segment %d reuses an old number", r.Value.Segment)
	}
}

func TestManifestRollover(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{ManifestLimit: 1})
	start := e.manNum
	for i := 0; i < 40; i++ {
		commit(t, e, "a", fmt.Sprint(i))
	}
	// Each fresh manifest rolls over once it is four times its start.
	if e.manNum < start+3 {
		t.Fatalf("manifest %d after 40 commits: want at least %d", e.manNum, start+3)
	}
	var mans []string
	for _, n := range files(t, m) {
		if strings.HasPrefix(n, "MANIFEST-") {
			mans = append(mans, n)
		}
	}
	if len(mans) != 1 {
		t.Fatalf("manifests %v", mans)
	}
	e.Close()
	e = open(t, m, Options{})
	defer e.Close()
	if len(e.Snapshots()) != 3 || contents(t, e, 0)["a"] != "39" || contents(t, e, 38)["a"] != "37" {
		t.Fatalf("after rollovers: %v %v", e.Snapshots(), contents(t, e, 0))
	}
}

func segmentBytes(t *testing.T, fsys FS) int64 {
	var size int64
	for _, n := range files(t, fsys) {
		if _, ok := segment.ParseFileName(n); ok {
			f, _ := fsys.Open(filepath.Join(dir, n))
			sz, _ := f.Size()
			f.Close()
			size += sz
		}
	}
	return size
}

func TestCompactionBoundsSpace(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{Level: segment.LevelNone})
	big := strings.Repeat("x", 1000)
	var kv []string
	for i := 0; i < 100; i++ {
		kv = append(kv, fmt.Sprintf("s%03d", i), big)
	}
	commit(t, e, kv...)
	want := map[string]string{}
	for i := 0; i < 100; i++ {
		want[fmt.Sprintf("s%03d", i)] = big
	}
	for round := 0; round < 60; round++ {
		// Each segment also holds a small value that never changes, so
		// no segment ever dies of itself: only compaction bounds space.
		anchor := fmt.Sprintf("anchor%03d", round)
		ch := []string{anchor, "."}
		want[anchor] = "."
		for i := 0; i < 10; i++ {
			k, v := fmt.Sprintf("s%03d", (round*10+i*7)%100), fmt.Sprintf("%s%d", big, round)
			ch = append(ch, k, v)
			want[k] = v
		}
		commit(t, e, ch...)
		if size, live := segmentBytes(t, m), int64(100*1000); size > 4*live {
			t.Fatalf("round %d: %d bytes of segments for %d live", round, size, live)
		}
	}
	if e.compactedAt == 0 {
		t.Fatal("no compaction ran")
	}
	if got := contents(t, e, 0); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatal("contents differ after compactions")
	}
	e.Close()
	e = open(t, m, Options{})
	defer e.Close()
	if got := contents(t, e, 0); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatal("contents differ after reopening")
	}
}

func TestStickyManifestSyncFailure(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{})
	commit(t, e, "a", "1")
	e.Close()
	inj := &vfs.Nth{Kinds: vfs.OpSync, N: 0, Err: vfs.EIO}
	e = open(t, vfs.WithErrors(m, inj), Options{})
	// Fail the second sync of the next commit: segment sync, then manifest.
	inj.N = inj.Count() + 2
	if _, err := e.Commit(values("a", "2"), nil); !errors.Is(err, vfs.EIO) {
		t.Fatalf("commit: %v, want EIO", err)
	}
	_, err := e.Commit(values("a", "3"), nil)
	if !errors.Is(err, vfs.EIO) || !strings.Contains(err.Error(), "reopened") {
		t.Fatalf("commit after a failed sync: %v, want the sticky error", err)
	}
	e.Close()
	e = open(t, m, Options{})
	defer e.Close()
	if got := contents(t, e, 0)["a"]; got != "1" && got != "2" {
		t.Fatalf("after reopen a=%q", got)
	}
	commit(t, e, "a", "4")
}

func TestSegmentFailureIsNotSticky(t *testing.T) {
	m := vfs.NewMem()
	inj := &vfs.Nth{Kinds: vfs.OpWrite, Err: vfs.ENOSPC}
	e := open(t, vfs.WithErrors(m, inj), Options{})
	defer e.Close()
	commit(t, e, "a", "1")
	inj.N = inj.Count() + 1
	if _, err := e.Commit(values("a", "2"), nil); !errors.Is(err, vfs.ENOSPC) {
		t.Fatalf("commit: %v", err)
	}
	used := segmentsInUse(t, e)
	for _, n := range files(t, m) {
		if id, ok := segment.ParseFileName(n); ok && !used[id] {
			t.Fatalf("abandoned segment %s left behind", n)
		}
	}
	commit(t, e, "a", "3")
	if got := contents(t, e, 0)["a"]; got != "3" {
		t.Fatalf("a=%q", got)
	}
}

// panicky panics in WriteTo, as a value's encoder might.
type panicky struct{}

func (panicky) WriteTo(io.Writer) (int64, error) { panic("encoder bug") }

// A panic while a value is written leaves no segment, no goroutine and
// no lock behind: the next commit works.
func TestPanicInValueLeavesNothing(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{})
	defer e.Close()
	commit(t, e, "a", "1")
	before := files(t, m)
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		e.Commit([]Write{{Name: "b", Kind: ValueState, Parts: []io.WriterTo{panicky{}}}}, nil)
	}()
	if after := files(t, m); !slices.Equal(before, after) {
		t.Fatalf("files %v, then %v", before, after)
	}
	commit(t, e, "b", "2")
}

// The manifest cut at every byte of its last record recovers the
// snapshot before it.
func TestTornManifestTail(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{})
	commit(t, e, "a", "1")
	commit(t, e, "a", "2")
	manName := manifest.FileName(e.manNum)
	e.Close()
	f, _ := m.Open(filepath.Join(dir, manName))
	size, _ := f.Size()
	data, _ := vfs.ReadAll(f, size)
	f.Close()
	log, err := manifest.ReplayBytes(data, manName)
	if err != nil {
		t.Fatal(err)
	}
	last := log.Offsets[len(log.Offsets)-1]
	for cut := last; cut < size; cut++ {
		c := m.CrashClone(vfs.CrashOptions{})
		rewrite(t, c, manName, func(b []byte) []byte { return b[:cut] })
		e := open(t, c, Options{})
		if got := contents(t, e, 0)["a"]; got != "1" {
			t.Fatalf("cut at %d: a=%q", cut, got)
		}
		var ce *errs.CorruptError
		if cut > last && (!errors.As(e.Report().TornTail, &ce) || ce.Hint != errs.HintTornTail) {
			t.Fatalf("cut at %d: torn tail %v", cut, e.Report().TornTail)
		}
		commit(t, e, "a", "3")
		e.Close()
		e = open(t, c, Options{})
		if got := contents(t, e, 0)["a"]; got != "3" {
			t.Fatalf("cut at %d, then a save: a=%q", cut, got)
		}
		e.Close()
	}
}

// The tools see the retention the writer used, not a default.
func TestReadersTakeRetentionFromTheManifest(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{Retain: 10})
	for i := range 12 {
		commit(t, e, "a", fmt.Sprint(i), fmt.Sprint("s", i), "x")
	}
	e.Close()
	ro := open(t, m, Options{ReadOnly: true})
	defer ro.Close()
	if snaps := ro.Snapshots(); len(snaps) != 10 || snaps[0].ID != 3 {
		t.Fatalf("read-only open sees %d snapshots from %d", len(snaps), snaps[0].ID)
	}
	if got := contents(t, ro, 3)["a"]; got != "2" {
		t.Fatalf("snapshot 3: a=%q", got)
	}
	live := ro.LiveBytes()
	for _, n := range files(t, m) {
		if id, ok := segment.ParseFileName(n); ok && live[id] == 0 {
			t.Fatalf("segment %s in use but not live", n)
		}
	}
	if p := ro.Verify(nil); len(p) != 0 {
		t.Fatalf("verify: %v", p)
	}
}

// A read-only open works while another engine keeps saving, rolling its
// manifest over and deleting segments.
func TestReadOnlyWhileSaving(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{ManifestLimit: 1, Retain: 1})
	defer e.Close()
	commit(t, e, "a", "0")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i < 300; i++ {
			if _, err := e.Commit(values("a", fmt.Sprint(i)), nil); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for opened := 0; ; opened++ {
		select {
		case <-done:
			if opened == 0 {
				t.Fatal("no read-only open happened during the saves")
			}
			return
		default:
		}
		ro, err := Open(dir, Options{FS: m, ReadOnly: true})
		if err != nil {
			t.Fatalf("read-only open %d during saves: %v", opened, err)
		}
		if _, ok := ro.Current(); !ok {
			t.Fatal("read-only open found no snapshot")
		}
		if p := ro.Verify(nil); len(p) > 0 {
			t.Fatalf("verify during saves: %v", p)
		}
		ro.Close()
	}
}

// Reopening with a larger retention does not resurrect snapshots whose
// segments were deleted under the smaller one.
func TestRetentionGrowsAfterReopen(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{Retain: 1})
	for i := 0; i < 5; i++ {
		commit(t, e, "a", fmt.Sprint(i), fmt.Sprintf("s%d", i), "x")
	}
	e.Close()
	for _, ro := range []bool{true, false} {
		e = open(t, m, Options{Retain: 3, ReadOnly: ro})
		if snaps := e.Snapshots(); len(snaps) != 1 || snaps[0].ID != 5 {
			t.Fatalf("read-only %v: snapshots %v", ro, snaps)
		}
		e.Close()
	}
	e = open(t, m, Options{Retain: 3})
	commit(t, e, "a", "x")
	commit(t, e, "a", "y")
	if snaps := e.Snapshots(); len(snaps) != 3 {
		t.Fatalf("%d snapshots retained after growing retention", len(snaps))
	}
	e.Close()
}

// A value read while a commit drops the last snapshot using its segment
// still reads: Hold keeps the segment open.
func TestHoldOutlivesCollection(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{Retain: 1})
	defer e.Close()
	commit(t, e, "a", "old")
	refs, release, ok, err := e.Hold(0, []string{"a", "missing"})
	if err != nil || !ok || refs[1].Kind != 0 {
		t.Fatalf("hold: %v %v %+v", ok, err, refs)
	}
	commit(t, e, "a", "new")
	if slices.Contains(files(t, m), segment.FileName(refs[0].Value.Segment)) {
		t.Fatal("the old segment was not deleted")
	}
	if got, err := e.Read(refs[0].Value); err != nil || string(got) != "old" {
		t.Fatalf("held read: %q %v", got, err)
	}
	release()
	if _, err := e.Read(refs[0].Value); !errors.Is(err, errs.ErrMissing) {
		t.Fatalf("read after release: %v", err)
	}
	if _, _, ok, _ := e.Hold(99, nil); ok {
		t.Fatal("held a snapshot that is not retained")
	}
}

// Replaying a long manifest costs what its records hold, not a copy of
// every state for every record: 1000 states and 20k records.
func TestLongManifestReplaysInLittleMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("makes 20k commits")
	}
	m := vfs.NewMem()
	e := open(t, m, Options{ManifestLimit: 1 << 40, Level: segment.LevelNone, Retain: 2})
	var kv []string
	for i := range 1000 {
		kv = append(kv, fmt.Sprintf("state-%04d", i), "x")
	}
	commit(t, e, kv...)
	for i := range 20_000 {
		commit(t, e, fmt.Sprintf("state-%04d", i%1000), fmt.Sprint(i))
	}
	e.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ro := open(t, m, Options{ReadOnly: true})
	log, _ := ro.Manifest()
	problems := ro.Verify(nil)
	runtime.ReadMemStats(&after)
	ro.Close()
	if len(log.Records) < 20_000 || len(problems) > 0 {
		t.Fatalf("%d records, problems %v", len(log.Records), problems)
	}
	got := after.TotalAlloc - before.TotalAlloc
	if got > 256<<20 {
		t.Fatalf("a read-only open and verify of %d records allocated %d MB", len(log.Records), got>>20)
	}
	t.Logf("a read-only open and verify of %d records of 1000 states allocated %.1f MB", len(log.Records), float64(got)/(1<<20))
}
