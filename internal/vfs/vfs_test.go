package vfs

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// testFS runs the behaviour every FS must share.
func testFS(t *testing.T, fsys FS, root string) {
	dir := filepath.Join(root, "db")
	if err := fsys.MkdirAll(dir); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "a")
	f, err := fsys.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("hello ")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("world")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if n, err := f.Size(); err != nil || n != 11 {
		t.Fatalf("size %d, %v", n, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// Create truncates a file that exists.
	if f, err = fsys.Create(name); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("hello?")); err != nil {
		t.Fatal(err)
	}
	f.Close()

	r, err := fsys.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	size, _ := r.Size()
	got, err := ReadAll(r, size)
	if err != nil || string(got) != "hello?" {
		t.Fatalf("read %q, %v", got, err)
	}
	buf := make([]byte, 4)
	if n, err := r.ReadAt(buf, 4); n != 2 || err != io.EOF {
		t.Fatalf("short ReadAt: %d, %v", n, err)
	}
	if _, err := r.Write([]byte("x")); err == nil {
		t.Fatal("write on a read-only file succeeded")
	}
	r.Close()

	if err := fsys.Rename(name, filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	if _, err := fsys.Open(name); !IsNotExist(err) {
		t.Fatalf("old name after rename: %v", err)
	}
	if err := fsys.SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	names, err := fsys.List(dir)
	if err != nil || !reflect.DeepEqual(names, []string{"b"}) {
		t.Fatalf("list %v, %v", names, err)
	}
	if err := fsys.Remove(filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Remove(filepath.Join(dir, "b")); !IsNotExist(err) {
		t.Fatalf("second remove: %v", err)
	}
	if _, err := fsys.Open(filepath.Join(dir, "missing")); !IsNotExist(err) {
		t.Fatalf("open missing: %v", err)
	}

	testLock(t, fsys, dir, func(err error) bool { return errors.Is(err, ErrLocked) })
}

// testLock takes dir's lock, checks that a second Lock fails with an
// error refused accepts, and that the lock can be taken again once
// released.
func testLock(t *testing.T, fsys FS, dir string, refused func(err error) bool) {
	t.Helper()
	l, err := fsys.Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fsys.Lock(dir); !refused(err) {
		t.Fatalf("second lock: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = fsys.Lock(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l.Close()
}

func TestOS(t *testing.T)  { testFS(t, OS, t.TempDir()) }
func TestMem(t *testing.T) { testFS(t, NewMem(), "/") }
func TestErrorFSPassesThrough(t *testing.T) {
	n := &Nth{Kinds: OpAll}
	testFS(t, WithErrors(NewMem(), n), "/")
	if n.Count() == 0 || n.Fired() != 0 {
		t.Fatalf("count %d fired %d", n.Count(), n.Fired())
	}
}

// create creates name holding data, synced if sync is set, and returns
// it open.
func create(t *testing.T, fsys FS, name string, data []byte, sync bool) File {
	t.Helper()
	f, err := fsys.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func write(t *testing.T, fsys FS, name string, data []byte, sync bool) {
	t.Helper()
	create(t, fsys, name, data, sync).Close()
}

// synced creates name holding data, durably (its name too), and returns
// it open: what is written to it next is not synced.
func synced(t *testing.T, m *MemFS, name string, data []byte) File {
	t.Helper()
	f := create(t, m, name, data, true)
	if err := m.SyncDir(filepath.Dir(name)); err != nil {
		t.Fatal(err)
	}
	return f
}

// newMemDir returns a new MemFS holding directory dir, durably.
func newMemDir(t *testing.T, dir string) *MemFS {
	t.Helper()
	m := NewMem()
	if err := MkdirAllDurable(m, dir); err != nil {
		t.Fatal(err)
	}
	return m
}

func read(t *testing.T, fsys FS, name string) ([]byte, bool) {
	t.Helper()
	f, err := fsys.Open(name)
	if IsNotExist(err) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, _ := f.Size()
	b, err := ReadAll(f, size)
	if err != nil {
		t.Fatal(err)
	}
	return b, true
}

func TestCrashKeepsOnlyDurable(t *testing.T) {
	m := newMemDir(t, "d")
	write(t, m, "d/synced", []byte("durable"), true)
	write(t, m, "d/unsynced", []byte("lost"), false)
	m.SyncDir("d")
	write(t, m, "d/nodirsync", []byte("name lost"), true)

	c := m.CrashClone(CrashOptions{})
	if b, ok := read(t, c, "d/synced"); !ok || string(b) != "durable" {
		t.Fatalf("synced file: %q %v", b, ok)
	}
	if b, ok := read(t, c, "d/unsynced"); !ok || len(b) != 0 {
		t.Fatalf("unsynced data survived: %q %v", b, ok)
	}
	if _, ok := read(t, c, "d/nodirsync"); ok {
		t.Fatal("a name created after the last SyncDir survived")
	}
	// The crashed machine itself is unchanged.
	if b, _ := read(t, m, "d/unsynced"); string(b) != "lost" {
		t.Fatalf("receiver changed: %q", b)
	}
}

func TestCrashRenameAndRemoveNeedDirSync(t *testing.T) {
	m := newMemDir(t, "d")
	write(t, m, "d/CURRENT", []byte("old"), true)
	write(t, m, "d/CURRENT.tmp", []byte("new"), true)
	m.SyncDir("d")
	if err := m.Rename("d/CURRENT.tmp", "d/CURRENT"); err != nil {
		t.Fatal(err)
	}
	c := m.CrashClone(CrashOptions{})
	if b, _ := read(t, c, "d/CURRENT"); string(b) != "old" {
		t.Fatalf("rename survived without dir sync: %q", b)
	}
	if _, ok := read(t, c, "d/CURRENT.tmp"); !ok {
		t.Fatal("tmp name lost")
	}
	m.SyncDir("d")
	c = m.CrashClone(CrashOptions{})
	if b, _ := read(t, c, "d/CURRENT"); string(b) != "new" {
		t.Fatalf("synced rename lost: %q", b)
	}
	if _, ok := read(t, c, "d/CURRENT.tmp"); ok {
		t.Fatal("renamed-away name survived")
	}
	m.Remove("d/CURRENT")
	if _, ok := read(t, m.CrashClone(CrashOptions{}), "d/CURRENT"); !ok {
		t.Fatal("remove survived without dir sync")
	}
	m.SyncDir("d")
	if _, ok := read(t, m.CrashClone(CrashOptions{}), "d/CURRENT"); ok {
		t.Fatal("synced remove undone")
	}
}

func TestCrashUnsyncedBlocks(t *testing.T) {
	m := NewMem()
	data := bytes.Repeat([]byte{0xAB}, 64*BlockSize)
	f := synced(t, m, "f", nil)
	f.Write(data)

	all, _ := read(t, m.CrashClone(CrashOptions{KeepUnsynced: 1}), "f")
	if !bytes.Equal(all, data) {
		t.Fatal("KeepUnsynced=1 lost data")
	}
	none, _ := read(t, m.CrashClone(CrashOptions{KeepUnsynced: 0}), "f")
	if len(none) != 0 {
		t.Fatalf("KeepUnsynced=0 kept %d bytes", len(none))
	}
	a, _ := read(t, m.CrashClone(CrashOptions{KeepUnsynced: 0.5, Seed: 7}), "f")
	b, _ := read(t, m.CrashClone(CrashOptions{KeepUnsynced: 0.5, Seed: 7}), "f")
	if !bytes.Equal(a, b) {
		t.Fatal("same seed, different crash")
	}
	kept, holes := 0, 0
	for i := 0; i < len(a); i += BlockSize {
		blk := a[i:min(i+BlockSize, len(a))]
		switch {
		case bytes.Equal(blk, data[:len(blk)]):
			kept++
		case bytes.Count(blk, []byte{0}) == len(blk):
			holes++
		default:
			t.Fatalf("block at %d is neither kept nor a hole", i)
		}
	}
	if kept == 0 || holes == 0 {
		t.Fatalf("KeepUnsynced=0.5 kept %d blocks, %d holes: want both", kept, holes)
	}
}

func TestCrashTornAndZeroedLastWrite(t *testing.T) {
	m := NewMem()
	f := synced(t, m, "log", []byte("record1;"))
	f.Write([]byte("record2;"))
	for cut := 0; cut <= 8; cut++ {
		b, _ := read(t, m.CrashClone(CrashOptions{KeepUnsynced: 1, Torn: true, TornLast: cut}), "log")
		if want := "record1;" + "record2;"[:cut]; string(b) != want {
			t.Fatalf("torn at %d: %q, want %q", cut, b, want)
		}
	}
	b, _ := read(t, m.CrashClone(CrashOptions{ZeroLast: true}), "log")
	if want := "record1;\x00\x00\x00\x00\x00\x00\x00\x00"; string(b) != want {
		t.Fatalf("zeroed: %q", b)
	}
	f.Sync()
	b, _ = read(t, m.CrashClone(CrashOptions{ZeroLast: true}), "log")
	if string(b) != "record1;record2;" {
		t.Fatalf("a synced last write was torn: %q", b)
	}
}

func TestCrashUnsyncedTruncate(t *testing.T) {
	m := NewMem()
	synced(t, m, "f", []byte("0123456789")).Close()
	f, _ := m.Create("f") // truncates it
	f.Write([]byte("0123"))
	if b, _ := read(t, m.CrashClone(CrashOptions{}), "f"); string(b) != "0123456789" {
		t.Fatalf("unsynced truncate survived: %q", b)
	}
	f.Sync()
	if b, _ := read(t, m.CrashClone(CrashOptions{}), "f"); string(b) != "0123" {
		t.Fatalf("synced truncate lost: %q", b)
	}
}

func TestErrorFSNth(t *testing.T) {
	work := func(fsys FS) error {
		for _, n := range []string{"a", "b", "c"} {
			f, err := fsys.Create(n)
			if err != nil {
				return err
			}
			if _, err := f.Write([]byte("0123456789")); err != nil {
				return err
			}
			if err := f.Sync(); err != nil {
				return err
			}
			f.Close()
		}
		return fsys.SyncDir(".")
	}
	count := &Nth{Kinds: OpWrite | OpSync}
	if err := work(WithErrors(NewMem(), count)); err != nil {
		t.Fatal(err)
	}
	if count.Count() != 6 {
		t.Fatalf("counted %d write+sync ops, want 6", count.Count())
	}
	for n := int64(1); n <= count.Count(); n++ {
		mem := NewMem()
		inj := &Nth{Kinds: OpWrite | OpSync, N: n, Err: ENOSPC, Short: true}
		err := work(WithErrors(mem, inj))
		if !errors.Is(err, ENOSPC) {
			t.Fatalf("n=%d: %v, want ENOSPC", n, err)
		}
		if inj.Fired() != 1 {
			t.Fatalf("n=%d fired %d", n, inj.Fired())
		}
		if n%2 == 1 { // a short write kept half its bytes
			name := []string{"a", "b", "c"}[n/2]
			if b, _ := read(t, mem, name); string(b) != "01234" {
				t.Fatalf("short write left %q", b)
			}
		}
	}
	all := &Nth{Kinds: OpSyncDir, N: 1, Err: EIO, All: true}
	fsys := WithErrors(NewMem(), all)
	for i := 0; i < 3; i++ {
		if err := fsys.SyncDir("."); !errors.Is(err, EIO) {
			t.Fatalf("sticky failure %d: %v", i, err)
		}
	}
}

// A lock this process holds is refused with an error that says so, not
// one that blames another process.
func TestLockSameProcess(t *testing.T) {
	testLock(t, OS, t.TempDir(), func(err error) bool {
		return errors.Is(err, ErrLocked) && strings.Contains(err.Error(), "in this process") && !strings.Contains(err.Error(), "another process")
	})
}
