package engine

import (
	"errors"
	"fmt"
	"io"
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

func open(t *testing.T, fsys FS, o Options) *Engine {
	t.Helper()
	o.FS = fsys
	e, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// openMem opens an engine with options o on a new MemFS.
func openMem(t *testing.T, o Options) (*vfs.MemFS, *Engine) {
	t.Helper()
	m := vfs.NewMem()
	return m, open(t, m, o)
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

// savedA returns a MemFS holding a closed DB that committed state "a" once
// for each of vals, in order: snapshot i+1 holds vals[i].
func savedA(t *testing.T, vals ...string) *vfs.MemFS {
	t.Helper()
	m, e := openMem(t, Options{})
	for _, v := range vals {
		commit(t, e, "a", v)
	}
	e.Close()
	return m
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

// cutTo cuts a file's bytes to their first n, for rewrite.
func cutTo(n int) func([]byte) []byte {
	return func(b []byte) []byte { return b[:n] }
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
	m, e := openMem(t, Options{})
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
	m, e := openMem(t, Options{})
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

func TestStickyManifestSyncFailure(t *testing.T) {
	m := savedA(t, "1")
	inj := &vfs.Nth{Kinds: vfs.OpSync, N: 0, Err: vfs.EIO}
	e := open(t, vfs.WithErrors(m, inj), Options{})
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
	m, e := openMem(t, Options{})
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
	m, e := openMem(t, Options{})
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
		rewrite(t, c, manName, cutTo(int(cut)))
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
