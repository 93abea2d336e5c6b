package instadump

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/instadump/instadump/internal/testdisk"
	"github.com/instadump/instadump/internal/vfs"
)

func openT(t *testing.T, dir string, opts ...Option) *DB {
	t.Helper()
	db, err := Open(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newStateT[T any](t *testing.T, db *DB, name string, def T, opts ...StateOption[T]) *State[T] {
	t.Helper()
	s, err := NewState(db, name, def, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func saveT(t *testing.T, db *DB) Snapshot {
	t.Helper()
	s, err := db.Save()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// savedDir returns a new DB directory in which the state name was saved
// with each of v and more in turn, a snapshot each (closed again).
func savedDir[T any](t *testing.T, name string, v T, more ...T) string {
	t.Helper()
	return savedDirWith(t, func(db *DB) {
		s := newStateT(t, db, name, v)
		for _, m := range more {
			saveT(t, db)
			s.Set(m)
		}
	})
}

// savedDirWith returns a new DB directory in which register registered
// states, then saved (closed again).
func savedDirWith(t *testing.T, register func(db *DB)) string {
	t.Helper()
	dir := t.TempDir()
	db := openT(t, dir)
	register(db)
	saveT(t, db)
	db.Close()
	return dir
}

// The seed's scenario, across two real processes.
func TestMain(m *testing.M) {
	if dir := os.Getenv("INSTADUMP_CHILD_DIR"); dir != "" {
		os.Exit(child(os.Getenv("INSTADUMP_CHILD"), dir))
	}
	os.Exit(runInOwnTempDir(m))
}

// runInOwnTempDir runs the tests with TMPDIR pointing at a new directory,
// removed after them with all they left in it: the Examples, which have
// no t.TempDir, leave theirs behind.
func runInOwnTempDir(m *testing.M) int {
	root, err := os.MkdirTemp("", "instadump-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(root)
	os.Setenv("TMPDIR", root)
	return m.Run()
}

func child(role, dir string) int {
	if step, ok := strings.CutPrefix(role, "lifecycle-"); ok {
		return lifecycleChild(step, dir)
	}
	switch role {
	case "seed":
		db, err := Open(dir)
		if err != nil {
			fmt.Println("open:", err)
			return 1
		}
		defer db.Close()
		v1, _ := NewState(db, "testvar1", 150)
		v2, _ := NewState(db, "testvar2", "abc")
		fmt.Println(v1.Get(), v2.Get())
		v1.Set(1000)
		if _, err := db.Save(); err != nil {
			fmt.Println("save:", err)
			return 1
		}
	case "lock":
		_, err := Open(dir)
		fmt.Println(errors.Is(err, ErrLocked), err)
	}
	return 0
}

func runChild(t *testing.T, role, dir string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "INSTADUMP_CHILD="+role, "INSTADUMP_CHILD_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child %s: %v\n%s", role, err, out)
	}
	return strings.TrimSpace(string(out))
}

// runChildren runs the children of roles one after another on dir, each
// of which must print what wants says.
func runChildren(t *testing.T, dir string, roles, wants []string) {
	t.Helper()
	for i, role := range roles {
		if got := runChild(t, role, dir); got != wants[i] {
			t.Fatalf("run %d (%s) printed %q, want %q", i+1, role, got, wants[i])
		}
	}
}

func TestSeedScenarioAcrossProcesses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	runChildren(t, dir, []string{"seed", "seed"}, []string{"150 abc", "1000 abc"})
}

func TestLockedByAnotherProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	openT(t, dir)
	if got := runChild(t, "lock", dir); !strings.HasPrefix(got, "true") {
		t.Fatalf("second process: %s", got)
	}
}

func TestReloadAllOrNothing(t *testing.T) {
	db := openT(t, t.TempDir())
	if err := db.Reload(); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("reload before any save: %v", err)
	}
	a := newStateT(t, db, "a", 1)
	saveT(t, db)
	a.Set(2)
	b := newStateT(t, db, "b", "x") // never saved
	b.Set("y")
	err := db.Reload()
	if !errors.Is(err, ErrNotSaved) || !strings.Contains(err.Error(), `b`) {
		t.Fatalf("reload with an unsaved state: %v", err)
	}
	if a.Get() != 2 || b.Get() != "y" {
		t.Fatalf("a failed reload changed values: %d %q", a.Get(), b.Get())
	}
	saveT(t, db)
	a.Set(3)
	b.Set("z")
	if err := db.Reload(); err != nil {
		t.Fatal(err)
	}
	if a.Get() != 2 || b.Get() != "y" {
		t.Fatalf("after reload: %d %q", a.Get(), b.Get())
	}
}

func TestAtomicallyRollsBack(t *testing.T) {
	db := openT(t, t.TempDir())
	a := newStateT(t, db, "a", 100)
	b := newStateT(t, db, "b", 0)
	boom := errors.New("boom")
	err := db.Atomically(func(tx *Tx) error {
		a.SetIn(tx, a.GetIn(tx)-10)
		b.SetIn(tx, b.GetIn(tx)+10)
		if a.GetIn(tx) != 90 || a.Get() != 100 {
			t.Errorf("inside: GetIn %d, Get %d", a.GetIn(tx), a.Get())
		}
		return boom
	})
	if !errors.Is(err, boom) || a.Get() != 100 || b.Get() != 0 {
		t.Fatalf("error: %v, a=%d b=%d", err, a.Get(), b.Get())
	}
	err = db.Atomically(func(tx *Tx) error {
		a.SetIn(tx, 1)
		panic("oops")
	})
	if err == nil || !strings.Contains(err.Error(), "oops") || a.Get() != 100 {
		t.Fatalf("panic: %v, a=%d", err, a.Get())
	}
	if err := db.Atomically(func(tx *Tx) error {
		a.SetIn(tx, a.GetIn(tx)-10)
		b.SetIn(tx, b.GetIn(tx)+10)
		return nil
	}); err != nil || a.Get() != 90 || b.Get() != 10 {
		t.Fatalf("commit: %v a=%d b=%d", err, a.Get(), b.Get())
	}
}

// Snapshots taken while transfers run between states all hold the sum.
func TestConcurrentTransfersAreConsistent(t *testing.T) {
	db := openT(t, t.TempDir(), WithRetain(100))
	const n, total = 5, 1000
	accts := make([]*State[int], n)
	for i := range accts {
		accts[i] = newStateT(t, db, fmt.Sprintf("acct%d", i), total/n)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				from, to := accts[(w+i)%n], accts[(w*3+i*7+1)%n]
				db.Atomically(func(tx *Tx) error {
					from.SetIn(tx, from.GetIn(tx)-1)
					to.SetIn(tx, to.GetIn(tx)+1)
					return nil
				})
				accts[i%n].Update(func(v int) int { return v }) // a no-op writer too
			}
		})
	}
	var ids []uint64
	for i := 0; i < 30; i++ {
		ids = append(ids, saveT(t, db).ID)
	}
	stop.Store(true)
	wg.Wait()
	for _, id := range ids {
		if err := db.ReloadFrom(id); err != nil {
			t.Fatal(err)
		}
		sum := 0
		for _, a := range accts {
			sum += a.Get()
		}
		if sum != total {
			t.Fatalf("snapshot %d holds %d, want %d: half a transfer", id, sum, total)
		}
	}
}

func TestUnregisteredStatesKept(t *testing.T) {
	dir := savedDirWith(t, func(db *DB) {
		newStateT(t, db, "a", 1)
		newStateT(t, db, "old", "keep me")
	})
	db := openT(t, dir)
	a := newStateT(t, db, "a", 0)
	a.Set(2)
	saveT(t, db)
	a.Set(3)
	s := saveT(t, db)
	if s.States != 2 {
		t.Fatalf("snapshot holds %d states, want 2", s.States)
	}
	db.Close()
	db = openT(t, dir)
	if old := newStateT(t, db, "old", ""); old.Get() != "keep me" {
		t.Fatalf("unregistered state came back as %q", old.Get())
	}
}

type recV1 struct {
	Name  string
	Count int
}
type recV2 struct {
	Name string
	Tags []string
}

func TestTypes(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	newStateT(t, db, "name", "alice")
	newStateT(t, db, "rec", recV1{"x", 3})
	saveT(t, db)
	db.Close()
	db = openT(t, dir)
	_, err := NewState(db, "name", 0)
	var de *DecodeError
	if !errors.Is(err, ErrTypeMismatch) || !errors.As(err, &de) || de.State != "name" || de.Wanted != "int" || de.Stored != "msgpack string" {
		t.Fatalf("type mismatch: %v", err)
	}
	// The failed registration left the name free.
	if s := newStateT(t, db, "name", ""); s.Get() != "alice" {
		t.Fatal(s.Get())
	}
	// Struct fields may come and go.
	if r := newStateT(t, db, "rec", recV2{}); r.Get().Name != "x" {
		t.Fatalf("%+v", r.Get())
	}
	if _, err := NewState(db, "rec", recV2{}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := NewState(db, "chan", make(chan int)); !errors.Is(err, ErrUnsupportedType) || !strings.Contains(err.Error(), `"chan"`) {
		t.Fatalf("unencodable state: %v", err)
	}
}

func TestUseAfterClose(t *testing.T) {
	db := openT(t, t.TempDir())
	s := newStateT(t, db, "a", 1)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Save(); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	for _, err := range []error{db.Reload(), db.ReloadFrom(1), db.Close(), db.Atomically(func(*Tx) error { return nil })} {
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("after close: %v", err)
		}
	}
	if _, err := NewState(db, "b", 1); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	if _, err := db.Snapshots(); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	s.Set(5) // in memory only; no panic
	if s.Get() != 5 {
		t.Fatal(s.Get())
	}
}

func TestReloadFromAndSnapshots(t *testing.T) {
	db := openT(t, t.TempDir())
	a := newStateT(t, db, "a", 0)
	for i := 1; i <= 4; i++ {
		a.Set(i)
		saveT(t, db)
	}
	snaps, _ := db.Snapshots()
	if len(snaps) != 3 || snaps[0].ID != 2 || snaps[2].ID != 4 || snaps[2].States != 1 {
		t.Fatalf("snapshots %+v", snaps)
	}
	if err := db.ReloadFrom(1); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("dropped snapshot: %v", err)
	}
	if err := db.ReloadFrom(2); err != nil || a.Get() != 2 {
		t.Fatalf("ReloadFrom(2): %v, a=%d", err, a.Get())
	}
	if s := saveT(t, db); s.ID != 5 {
		t.Fatalf("save after ReloadFrom wrote snapshot %d", s.ID)
	}
}

func dirSize(t *testing.T, dir string) int64 {
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		fi, err := e.Info()
		if err == nil {
			n += fi.Size()
		}
	}
	return n
}

func TestIncrementalAndBoundedSpace(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, WithCompression(LevelNone))
	states := make([]*State[[]byte], 100)
	for i := range states {
		states[i] = newStateT(t, db, fmt.Sprintf("s%02d", i), bytes.Repeat([]byte{byte(i)}, 10_000))
	}
	full := saveT(t, db)
	states[7].Set(bytes.Repeat([]byte{1}, 10_000))
	one := saveT(t, db)
	if one.Bytes*20 > full.Bytes {
		t.Fatalf("changing 1 of 100 states wrote %d bytes; the full save wrote %d", one.Bytes, full.Bytes)
	}
	live := int64(100 * 10_000)
	for round := 0; round < 60; round++ {
		for i := 0; i < 10; i++ {
			states[(round*13+i*10)%100].Set(bytes.Repeat([]byte{byte(round)}, 10_000))
		}
		saveT(t, db)
		if size := dirSize(t, dir); size > 4*live {
			t.Fatalf("round %d: directory holds %d bytes for %d live", round, size, live)
		}
	}
}

func TestStickySyncError(t *testing.T) {
	mem := vfs.NewMem()
	inj := &vfs.Nth{Kinds: vfs.OpSync, Err: vfs.EIO}
	db := openT(t, "db", WithFS(vfs.WithErrors(mem, inj)))
	a := newStateT(t, db, "a", 1)
	saveT(t, db)
	a.Set(2)
	inj.N = inj.Count() + 2 // the manifest's sync
	if _, err := db.Save(); !errors.Is(err, vfs.EIO) {
		t.Fatalf("save: %v", err)
	}
	a.Set(3)
	if _, err := db.Save(); !errors.Is(err, vfs.EIO) {
		t.Fatalf("save after a failed sync: %v", err)
	}
	db.Close()
	db = openT(t, "db", WithFS(mem))
	if got := newStateT(t, db, "a", 0).Get(); got != 1 && got != 2 {
		t.Fatalf("recovered a=%d", got)
	}
}

// A real full disk: Save fails cleanly, the last snapshot stays loadable,
// and saves work again once there is room.
func TestFullDisk(t *testing.T) {
	dir := filepath.Join(testdisk.Tmpfs(t, "1m"), "db")
	db := openT(t, dir, WithCompression(LevelNone))
	small := newStateT(t, db, "small", "v1")
	big := newStateT(t, db, "big", []byte(nil))
	saveT(t, db)
	big.Set(bytes.Repeat([]byte{7}, 2<<20)) // more than the disk holds
	small.Set("v2")
	if _, err := db.Save(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("save on a full disk: %v", err)
	}
	if err := db.Reload(); err != nil || small.Get() != "v1" {
		t.Fatalf("reload after ENOSPC: %v, small=%q", err, small.Get())
	}
	big.Set([]byte("fits"))
	small.Set("v3")
	saveT(t, db)
	db.Close()
	db = openT(t, dir)
	if got := newStateT(t, db, "small", "").Get(); got != "v3" {
		t.Fatalf("after reopen small=%q", got)
	}
}

func TestInterfaceStates(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	a := newStateT[any](t, db, "a", nil)
	b := newStateT[any](t, db, "b", "x")
	if err := db.Atomically(func(tx *Tx) error {
		b.SetIn(tx, nil)
		if b.GetIn(tx) != nil {
			t.Error("GetIn after SetIn(nil)")
		}
		return nil
	}); err != nil || b.Get() != nil {
		t.Fatalf("SetIn(nil): %v, b=%v", err, b.Get())
	}
	saveT(t, db)
	a.Set(5)
	if err := db.Reload(); err != nil || a.Get() != nil {
		t.Fatalf("reload of a nil interface: %v, a=%v", err, a.Get())
	}
}

// A large map is encoded on several cores: the bytes decode to the same
// map.
func TestLargeMapRoundTrip(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	m := make(map[int]string, 3*(1<<15))
	for i := 0; i < 3*(1<<15)+17; i++ {
		m[i] = fmt.Sprint("v", i)
	}
	newStateT(t, db, "m", m)
	saveT(t, db)
	db.Close()
	db = openT(t, dir)
	got := newStateT(t, db, "m", map[int]string(nil)).Get()
	if len(got) != len(m) {
		t.Fatalf("%d entries back, want %d", len(got), len(m))
	}
	for k, v := range m {
		if got[k] != v {
			t.Fatalf("entry %d: %q, want %q", k, got[k], v)
		}
	}
}
