package vfs

import (
	"bytes"
	"errors"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// What a crash may lose beyond unsynced data: directories whose own name
// was never synced, any subset of the unsynced name operations, what a
// failed fsync dropped, and any unsynced write torn.

func TestCrashLosesUnsyncedDirectory(t *testing.T) {
	m := NewMem()
	if err := m.MkdirAll("a/b"); err != nil {
		t.Fatal(err)
	}
	write(t, m, "a/b/f", []byte("data"), true)
	if err := m.SyncDir("a/b"); err != nil {
		t.Fatal(err)
	}
	c := m.CrashClone(CrashOptions{KeepUnsynced: 1})
	if names, err := c.List("a"); !IsNotExist(err) {
		t.Fatalf("a directory whose name was never synced survived: %v, %v", names, err)
	}
	if _, ok := read(t, c, "a/b/f"); ok {
		t.Fatal("a file in a lost directory survived")
	}
	m.SyncDir(".")
	c = m.CrashClone(CrashOptions{})
	if names, err := c.List("a"); err != nil || len(names) != 0 {
		t.Fatalf("a synced, a/b not: list a = %v, %v", names, err)
	}
	m.SyncDir("a")
	c = m.CrashClone(CrashOptions{})
	if b, ok := read(t, c, "a/b/f"); !ok || string(b) != "data" {
		t.Fatalf("every parent synced: %q %v", b, ok)
	}
	// Keeping every unsynced name operation keeps the directories too.
	m2 := NewMem()
	m2.MkdirAll("x/y")
	write(t, m2, "x/y/f", []byte("data"), true)
	if b, ok := read(t, m2.CrashClone(CrashOptions{KeepNames: 1}), "x/y/f"); !ok || string(b) != "data" {
		t.Fatalf("KeepNames=1: %q %v", b, ok)
	}
}

// syncRecorder records the SyncDir and MkdirAll calls made through it.
type syncRecorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *syncRecorder) MaybeError(op Op) error {
	if op.Kind&(OpSyncDir|OpMkdir) != 0 {
		r.mu.Lock()
		r.calls = append(r.calls, op.Kind.String()+" "+filepath.ToSlash(op.Path))
		r.mu.Unlock()
	}
	return nil
}

func TestMkdirAllDurable(t *testing.T) {
	m := NewMem()
	rec := &syncRecorder{}
	fsys := WithErrors(m, rec)
	if err := MkdirAllDurable(fsys, "x/y/z"); err != nil {
		t.Fatal(err)
	}
	want := []string{"mkdir x", "syncdir .", "mkdir x/y", "syncdir x", "mkdir x/y/z", "syncdir x/y"}
	if !reflect.DeepEqual(rec.calls, want) {
		t.Fatalf("calls %q, want %q", rec.calls, want)
	}
	if names, err := m.CrashClone(CrashOptions{}).List("x/y/z"); err != nil || len(names) != 0 {
		t.Fatalf("after a crash: %v, %v", names, err)
	}
	// An existing directory: no mkdir, and its parent is synced.
	rec.calls = nil
	if err := MkdirAllDurable(fsys, "x/y/z"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"syncdir x/y"}; !reflect.DeepEqual(rec.calls, want) {
		t.Fatalf("calls %q, want %q", rec.calls, want)
	}
	// A directory left unsynced by a process that died is made durable.
	m.MkdirAll("x/y/w")
	if err := MkdirAllDurable(m, "x/y/w"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CrashClone(CrashOptions{}).List("x/y/w"); err != nil {
		t.Fatalf("an existing unsynced directory was not made durable: %v", err)
	}
	write(t, m, "file", nil, true)
	if err := MkdirAllDurable(m, "file/sub"); err == nil {
		t.Fatal("a directory under a file was made")
	}
	dir := filepath.Join(t.TempDir(), "p", "q")
	if err := MkdirAllDurable(OS, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := OS.List(dir); err != nil {
		t.Fatal(err)
	}
}

func TestCrashKeepsAnySubsetOfNameOps(t *testing.T) {
	m := newMemDir(t, "d")
	write(t, m, "d/CURRENT", []byte("old"), true)
	write(t, m, "d/CURRENT.tmp", []byte("new"), true)
	write(t, m, "d/gone", []byte("x"), true)
	m.SyncDir("d")
	write(t, m, "d/seg", []byte("seg"), true)
	if err := m.Rename("d/CURRENT.tmp", "d/CURRENT"); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove("d/gone"); err != nil {
		t.Fatal(err)
	}
	want := []string{"create d/seg", "rename d/CURRENT.tmp d/CURRENT", "remove d/gone"}
	if got := m.UnsyncedNames(); !reflect.DeepEqual(got, want) {
		t.Fatalf("unsynced %q, want %q", got, want)
	}
	outcome := func(c *MemFS) [3]bool {
		_, created := read(t, c, "d/seg")
		cur, _ := read(t, c, "d/CURRENT")
		_, tmp := read(t, c, "d/CURRENT.tmp")
		renamed := string(cur) == "new"
		if renamed == tmp {
			t.Fatalf("the rename is half done: CURRENT=%q, CURRENT.tmp there: %v", cur, tmp)
		}
		_, kept := read(t, c, "d/gone")
		return [3]bool{created, renamed, !kept}
	}
	seen := map[[3]bool]bool{}
	for seed := int64(0); seed < 200; seed++ {
		seen[outcome(m.CrashClone(CrashOptions{KeepNames: 0.5, Seed: seed}))] = true
	}
	if len(seen) != 8 {
		t.Fatalf("200 seeds gave %d of the 8 subsets of three operations: %v", len(seen), seen)
	}
	if got := outcome(m.CrashClone(CrashOptions{})); got != [3]bool{} {
		t.Fatalf("KeepNames=0 kept %v", got)
	}
	if got := outcome(m.CrashClone(CrashOptions{KeepNames: 1})); got != [3]bool{true, true, true} {
		t.Fatalf("KeepNames=1 kept %v", got)
	}
	m.SyncDir("d")
	if got := outcome(m.CrashClone(CrashOptions{})); got != [3]bool{true, true, true} {
		t.Fatalf("after SyncDir: %v", got)
	}
}

// Operations on the same name survive as a prefix: a file renamed twice
// is under one of its three names, and a name removed and created again
// holds the old file, nothing, or the new file.
func TestCrashNameOpsInOrder(t *testing.T) {
	m := NewMem()
	write(t, m, "a", []byte("A"), true)
	write(t, m, "x", []byte("old"), true)
	m.SyncDir(".")
	m.Rename("a", "b")
	m.Rename("b", "c")
	m.Remove("x")
	write(t, m, "x", []byte("new"), true)
	renames, xs := map[string]bool{}, map[string]bool{}
	for seed := int64(0); seed < 100; seed++ {
		c := m.CrashClone(CrashOptions{KeepNames: 0.5, Seed: seed})
		names, _ := c.List(".")
		var where []string
		for _, n := range names {
			if n != "x" {
				where = append(where, n)
			}
		}
		if len(where) != 1 {
			t.Fatalf("seed %d: the renamed file is under %v", seed, where)
		}
		renames[where[0]] = true
		b, _ := read(t, c, "x")
		xs[string(b)] = true
	}
	if want := map[string]bool{"a": true, "b": true, "c": true}; !reflect.DeepEqual(renames, want) {
		t.Fatalf("renamed file found under %v, want each of a, b, c", renames)
	}
	if want := map[string]bool{"old": true, "": true, "new": true}; !reflect.DeepEqual(xs, want) {
		t.Fatalf("x held %v, want old, nothing or new", xs)
	}
}

// A rename between directories is durable whole once either is synced,
// with the creation it depends on.
func TestSyncDirMakesRenameWhole(t *testing.T) {
	m := NewMem()
	MkdirAllDurable(m, "d")
	MkdirAllDurable(m, "e")
	write(t, m, "e/x", []byte("x"), true)
	write(t, m, "e/other", []byte("o"), true)
	m.Rename("e/x", "d/x")
	m.SyncDir("d")
	if got := m.UnsyncedNames(); !reflect.DeepEqual(got, []string{"create e/other"}) {
		t.Fatalf("still unsynced: %q", got)
	}
	c := m.CrashClone(CrashOptions{})
	if _, ok := read(t, c, "d/x"); !ok {
		t.Fatal("synced rename lost")
	}
	if _, ok := read(t, c, "e/x"); ok {
		t.Fatal("renamed file under both names")
	}
}

// A failed fsync is not retried into success: what it lost stays lost,
// though reads see it until the crash.
func TestFailedSyncLosesDataForGood(t *testing.T) {
	for _, keep := range []bool{false, true} {
		m := NewMem()
		if keep {
			m.SetFailedSync(CrashOptions{KeepUnsynced: 1})
		}
		fsys := WithErrors(m, &Nth{Kinds: OpSync, N: 1, Err: EIO})
		f, err := fsys.Create("f")
		if err != nil {
			t.Fatal(err)
		}
		m.SyncDir(".")
		f.Write([]byte("precious"))
		if err := f.Sync(); !errors.Is(err, EIO) {
			t.Fatalf("sync: %v, want EIO", err)
		}
		if b, _ := read(t, fsys, "f"); string(b) != "precious" {
			t.Fatalf("reads after the failed sync: %q", b)
		}
		if err := f.Sync(); err != nil { // the retry succeeds...
			t.Fatal(err)
		}
		want := ""
		if keep {
			want = "precious"
		}
		if b, _ := read(t, m.CrashClone(CrashOptions{KeepUnsynced: 1}), "f"); string(b) != want {
			t.Fatalf("keep=%v: after a crash %q, want %q", keep, b, want)
		}
		// Later writes are durable after a good sync, over whatever the
		// failure left.
		f.Write([]byte("more"))
		f.Sync()
		if keep {
			want = "precious"
		} else {
			want = strings.Repeat("\x00", 8)
		}
		if b, _ := read(t, m.CrashClone(CrashOptions{}), "f"); string(b) != want+"more" {
			t.Fatalf("keep=%v: after a good sync %q", keep, b)
		}
	}
}

func TestFailedSyncDrawsBlocks(t *testing.T) {
	m := NewMem()
	m.SetFailedSync(CrashOptions{KeepUnsynced: 0.5, Seed: 3})
	data := bytes.Repeat([]byte{0xCD}, 32*BlockSize)
	fsys := WithErrors(m, &Nth{Kinds: OpSync, N: 1, Err: EIO})
	f, _ := fsys.Create("f")
	m.SyncDir(".")
	f.Write(data)
	f.Sync()
	got, _ := read(t, m.CrashClone(CrashOptions{KeepUnsynced: 1}), "f")
	kept := 0
	for i := 0; i < len(got); i += BlockSize {
		if got[i] == 0xCD {
			kept++
		}
	}
	if kept == 0 || kept == 32 {
		t.Fatalf("a failed sync at KeepUnsynced=0.5 kept %d of 32 blocks", kept)
	}
}

func TestCrashTearsAnyWrite(t *testing.T) {
	m := NewMem()
	f := synced(t, m, "log", nil)
	first, second := "first-record;", "second-record;"
	f.Write([]byte(first))
	f.Write([]byte(second))
	cuts := map[int]bool{}
	for seed := int64(0); seed < 200; seed++ {
		b, _ := read(t, m.CrashClone(CrashOptions{KeepUnsynced: 1, Tear: 1, Seed: seed}), "log")
		n1 := min(len(b), len(first))
		for n1 > 0 && b[n1-1] == 0 {
			n1--
		}
		if string(b[:n1]) != first[:n1] {
			t.Fatalf("seed %d: %q does not start with a prefix of the first write", seed, b)
		}
		if len(b) > len(first) {
			rest := b[len(first):]
			if !strings.HasPrefix(second, string(rest)) || strings.Trim(string(b[n1:len(first)]), "\x00") != "" {
				t.Fatalf("seed %d: %q is not two torn writes", seed, b)
			}
		}
		cuts[n1] = true
	}
	if len(cuts) < len(first)/2 {
		t.Fatalf("the first write was torn at only %d places: %v", len(cuts), slices.Sorted(maps.Keys(cuts)))
	}
	if b, _ := read(t, m.CrashClone(CrashOptions{KeepUnsynced: 1, Zero: 1}), "log"); string(b) != strings.Repeat("\x00", len(first+second)) {
		t.Fatalf("Zero=1: %q", b)
	}
	f.Sync()
	if b, _ := read(t, m.CrashClone(CrashOptions{Tear: 1, Zero: 1}), "log"); string(b) != first+second {
		t.Fatalf("synced writes were torn: %q", b)
	}
}
