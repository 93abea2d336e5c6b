package engine

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

const dir = "db"

func open(t *testing.T, fsys vfs.FS, o Options) *Engine {
	t.Helper()
	o.FS = fsys
	e, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func commit(t *testing.T, e *Engine, kv ...string) manifest.Snapshot {
	t.Helper()
	var ch []Change
	for i := 0; i < len(kv); i += 2 {
		ch = append(ch, Change{Name: kv[i], Raw: []byte(kv[i+1])})
	}
	s, err := e.Commit(ch)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// contents reads every state of the current snapshot.
func contents(t *testing.T, e *Engine) map[string]string {
	t.Helper()
	s, ok := e.Current()
	if !ok {
		return nil
	}
	out := map[string]string{}
	for name, ref := range s.States {
		raw, err := e.Read(ref)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = string(raw)
	}
	return out
}

func files(t *testing.T, fsys vfs.FS) []string {
	names, err := fsys.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestCommitReopen(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{})
	if _, ok := e.Current(); ok {
		t.Fatal("a new DB has a snapshot")
	}
	s1 := commit(t, e, "a", "1", "b", "2")
	s2 := commit(t, e, "b", "3")
	if s1.ID != 1 || s2.ID != 2 || s2.States["a"] != s1.States["a"] || s2.States["b"].Since != 2 {
		t.Fatalf("snapshots %+v %+v", s1, s2)
	}
	if s3, err := e.Commit(nil); err != nil || s3.ID != 2 {
		t.Fatalf("empty commit: %v %v", s3.ID, err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Commit(nil); !errors.Is(err, errs.ErrClosed) {
		t.Fatalf("commit after close: %v", err)
	}
	// A crash right now (only synced data) recovers everything.
	for _, fsys := range []*vfs.MemFS{m, m.CrashClone(vfs.CrashOptions{})} {
		e = open(t, fsys, Options{})
		if got := contents(t, e); fmt.Sprint(got) != "map[a:1 b:3]" {
			t.Fatalf("reopened: %v", got)
		}
		if s, _ := e.Current(); s.ID != 2 {
			t.Fatalf("current %d", s.ID)
		}
		e.Close()
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
	if _, err := ro.Commit([]Change{{"a", []byte("x")}}); !errors.Is(err, errs.ErrReadOnly) {
		t.Fatalf("read-only commit: %v", err)
	}
	ro.Close()
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
	// Only the segments of snapshots 5 and 6 remain, plus those still
	// holding s0..s3.
	used := usedSegments(snaps)
	for _, n := range files(t, m) {
		if id, ok := segment.ParseFileName(n); ok && !used[id] {
			t.Fatalf("unreferenced segment %s kept (files %v)", n, files(t, m))
		}
	}
	e.Close()
}

func TestOrphansRemoved(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{})
	commit(t, e, "a", "1")
	e.Close()
	for _, n := range []string{"000099.seg", "CURRENT.tmp", "MANIFEST-000050", "x.tmp"} {
		f, _ := m.Create(filepath.Join(dir, n))
		f.Write([]byte("junk"))
		f.Close()
	}
	e = open(t, m, Options{})
	defer e.Close()
	rep := e.Report()
	if len(rep.Removed) != 4 {
		t.Fatalf("removed %v", rep.Removed)
	}
	for _, n := range files(t, m) {
		if strings.HasSuffix(n, ".tmp") || n == "000099.seg" || n == "MANIFEST-000050" {
			t.Fatalf("%s survived", n)
		}
	}
	if got := contents(t, e); got["a"] != "1" {
		t.Fatalf("contents %v", got)
	}
	// A new segment does not reuse the orphan's number.
	s := commit(t, e, "a", "2")
	if s.States["a"].Segment <= 99 {
		t.Fatalf("segment %d reuses an old number", s.States["a"].Segment)
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
	if len(e.Snapshots()) != 3 || contents(t, e)["a"] != "39" {
		t.Fatalf("after rollovers: %v %v", e.Snapshots(), contents(t, e))
	}
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
	for round := 0; round < 60; round++ {
		var ch []string
		for i := 0; i < 10; i++ {
			ch = append(ch, fmt.Sprintf("s%03d", (round*10+i*7)%100), fmt.Sprintf("%s%d", big, round))
		}
		commit(t, e, ch...)
		var size int64
		for _, n := range files(t, m) {
			if _, ok := segment.ParseFileName(n); ok {
				f, _ := m.Open(filepath.Join(dir, n))
				sz, _ := f.Size()
				f.Close()
				size += sz
			}
		}
		if live := int64(100 * 1000); size > 4*live {
			t.Fatalf("round %d: %d bytes of segments for %d live", round, size, live)
		}
	}
	e.Close()
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
	_, err := e.Commit([]Change{{"a", []byte("2")}})
	if !errors.Is(err, vfs.EIO) {
		t.Fatalf("commit: %v, want EIO", err)
	}
	_, err2 := e.Commit([]Change{{"a", []byte("3")}})
	if !errors.Is(err2, vfs.EIO) || !strings.Contains(err2.Error(), "reopened") {
		t.Fatalf("commit after a failed sync: %v, want the sticky error", err2)
	}
	e.Close()
	e = open(t, m, Options{})
	defer e.Close()
	if got := contents(t, e)["a"]; got != "1" && got != "2" {
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
	if _, err := e.Commit([]Change{{"a", []byte("2")}}); !errors.Is(err, vfs.ENOSPC) {
		t.Fatalf("commit: %v", err)
	}
	for _, n := range files(t, m) {
		if id, ok := segment.ParseFileName(n); ok && !usedSegments(e.Snapshots())[id] {
			t.Fatalf("abandoned segment %s left behind", n)
		}
	}
	commit(t, e, "a", "3")
	if got := contents(t, e)["a"]; got != "3" {
		t.Fatalf("a=%q", got)
	}
}

// The manifest cut at every byte of its last record recovers the
// snapshot before it.
func TestTornManifestTail(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{})
	commit(t, e, "a", "1")
	commit(t, e, "a", "2")
	manName := filepath.Join(dir, manifest.FileName(e.manNum))
	e.Close()
	f, _ := m.Open(manName)
	size, _ := f.Size()
	data, _ := vfs.ReadAll(f, size)
	f.Close()
	rep, err := manifest.ReplayBytes(data, manName, 0)
	if err != nil {
		t.Fatal(err)
	}
	last := rep.Offsets[len(rep.Offsets)-1]
	for cut := last; cut < size; cut++ {
		c := m.CrashClone(vfs.CrashOptions{})
		w, _ := c.OpenRW(manName)
		w.Truncate(cut)
		w.Sync()
		w.Close()
		e := open(t, c, Options{})
		if got := contents(t, e)["a"]; got != "1" {
			t.Fatalf("cut at %d: a=%q", cut, got)
		}
		if cut > last && e.Report().TornTail == nil {
			t.Fatalf("cut at %d: no torn tail reported", cut)
		}
		commit(t, e, "a", "3")
		e.Close()
		e = open(t, c, Options{})
		if got := contents(t, e)["a"]; got != "3" {
			t.Fatalf("cut at %d, then a save: a=%q", cut, got)
		}
		e.Close()
	}
}

func TestDamagedSegment(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{})
	commit(t, e, "a", "1", "b", "1")
	s2 := commit(t, e, "a", "2")
	e.Close()
	seg := filepath.Join(dir, segment.FileName(s2.States["a"].Segment))
	flip := func(fsys *vfs.MemFS, off int64) {
		f, _ := fsys.OpenRW(seg)
		b := make([]byte, 1)
		f.ReadAt(b, off)
		b[0] ^= 0x20
		f.WriteAt(b, off)
		f.Close()
	}
	// A flipped byte in the value: strict open succeeds (the index is
	// intact) and reading the value fails; fallback finds it at open.
	c := m.CrashClone(vfs.CrashOptions{KeepUnsynced: 1})
	flip(c, segment.HeaderSize+2)
	e = open(t, c, Options{})
	if _, err := e.Read(e.snaps[len(e.snaps)-1].States["a"]); !errors.Is(err, errs.ErrCorrupt) || !strings.Contains(err.Error(), seg) {
		t.Fatalf("read of a damaged value: %v", err)
	}
	e.Close()
	e = open(t, c, Options{Fallback: true})
	rep := e.Report()
	if !rep.FellBack || rep.Damaged != 2 || rep.UsedID != 1 || len(rep.Broken) != 2 {
		t.Fatalf("fallback report %+v", rep)
	}
	if got := contents(t, e); got["a"] != "1" || got["b"] != "1" {
		t.Fatalf("fallback contents %v", got)
	}
	for _, b := range rep.Broken {
		if !slices.Contains(files(t, c), b) {
			t.Fatalf("%s not kept aside: %v", b, files(t, c))
		}
	}
	e.Close()
	// A damaged trailer fails a strict open.
	c = m.CrashClone(vfs.CrashOptions{KeepUnsynced: 1})
	f, _ := c.Open(seg)
	size, _ := f.Size()
	f.Close()
	flip(c, size-20)
	if _, err := Open(dir, Options{FS: c}); !errors.Is(err, errs.ErrCorrupt) || !strings.Contains(err.Error(), seg) {
		t.Fatalf("strict open of a damaged segment: %v", err)
	}
	// The refused open changed nothing: the same damage is found again.
	if _, err := Open(dir, Options{FS: c}); !errors.Is(err, errs.ErrCorrupt) {
		t.Fatalf("second strict open: %v", err)
	}
	_ = bytes.MinRead
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
			if _, err := e.Commit([]Change{{"a", []byte(fmt.Sprint(i))}}); err != nil {
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
