package instadump

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/instadump/instadump/engine"
	"github.com/instadump/instadump/internal/vfs"
)

// States over a program's life: dropped, migrated, renamed, across
// restarts of real processes.

type personV1 struct {
	Name string
	Age  int
}

type personV2 struct {
	FullName string `msgpack:"FullName,alias:Name"` // renamed: the alias reads the old name
	Age      int
}

type personV3 struct {
	FullName string
	Born     int // a type change: age became year of birth
}

// lifecycleChild is one run of the program, in a process of its own.
func lifecycleChild(step, dir string) int {
	db, err := Open(dir)
	if err != nil {
		fmt.Println("open:", err)
		return 1
	}
	defer db.Close()
	switch step {
	case "1":
		NewState(db, "old", 5)
		NewState(db, "count", 41)
		NewState(db, "person", personV1{"Ada Lovelace", 36})
		m, _ := NewMap[string, int](db, "m")
		m.Set("x", 1)
	case "2":
		if err := db.Drop("old"); err != nil {
			fmt.Println("drop:", err)
			return 1
		}
		c, err := NewState(db, "count", "", MigrateFrom(0, func(n int) (string, error) { return strconv.Itoa(n + 1), nil }))
		if err != nil {
			fmt.Println("count:", err)
			return 1
		}
		p, err := NewState(db, "person", personV2{})
		if err != nil {
			fmt.Println("person:", err)
			return 1
		}
		fmt.Println(c.Get(), p.Get().FullName)
	case "3":
		old, _ := NewState(db, "old", -1)
		c, err := NewState(db, "count", "", MigrateFrom(0, func(int) (string, error) { return "", errors.New("migrated twice") }))
		if err != nil {
			fmt.Println("count:", err)
			return 1
		}
		p, err := NewState(db, "person", personV3{},
			MigrateFrom(0, func(old personV2) (personV3, error) { return personV3{old.FullName, 2026 - old.Age}, nil }))
		if err != nil {
			fmt.Println("person:", err)
			return 1
		}
		snaps, _ := db.Snapshots()
		fmt.Println(old.Get(), c.Get(), p.Get().FullName, p.Get().Born, len(snaps))
	}
	if _, err := db.Save(); err != nil {
		fmt.Println("save:", err)
		return 1
	}
	return 0
}

func TestLifecycleAcrossProcesses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	// In run 3, "old" was dropped: it starts from its default; "count"
	// loads in its new form without migrating again; "person" migrates
	// once more.
	runChildren(t, dir, []string{"lifecycle-1", "lifecycle-2", "lifecycle-3"},
		[]string{"", "42 Ada Lovelace", "-1 42 Ada Lovelace 1990 2"})
	// The snapshot before the drop still has "old".
	db := openT(t, dir)
	old := newStateT(t, db, "old", 0)
	snaps, _ := db.Snapshots()
	if err := db.ReloadFrom(snaps[0].ID); err != nil || old.Get() != 5 {
		t.Fatalf("snapshot %d: old=%d, %v", snaps[0].ID, old.Get(), err)
	}
}

func TestDrop(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, WithRetain(10))
	a := newStateT(t, db, "a", 1)
	newStateT(t, db, "b", 2)
	s1 := saveT(t, db)
	if err := db.Drop("a"); err != nil {
		t.Fatal(err)
	}
	if err := db.Drop("a"); !errors.Is(err, ErrNoState) {
		t.Fatalf("second drop: %v", err)
	}
	if err := db.Drop("never"); !errors.Is(err, ErrNoState) {
		t.Fatalf("drop of an unknown name: %v", err)
	}
	// The next Save writes a snapshot without it, though nothing changed.
	s2 := saveT(t, db)
	if s2.ID != s1.ID+1 || s2.States != 1 || s2.Bytes != 0 {
		t.Fatalf("save after a drop: %+v", s2)
	}
	// The dropped *State works in memory, is not saved, fails SetIn.
	a.Set(10)
	if s := saveT(t, db); s.ID != s2.ID {
		t.Fatalf("a dropped state was saved: snapshot %d", s.ID)
	}
	err := db.Atomically(func(tx *Tx) error { a.SetIn(tx, 3); return nil })
	if err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Fatalf("SetIn on a dropped state: %v", err)
	}
	// The name can be registered again, with its default.
	if a2 := newStateT(t, db, "a", 7); a2.Get() != 7 {
		t.Fatalf("registered again: %d", a2.Get())
	}
	saveT(t, db)
	// A state only on disk (not registered in this run) can be dropped.
	db.Close()
	db = openT(t, dir, WithRetain(10))
	if err := db.Drop("b"); err != nil {
		t.Fatal(err)
	}
	if s := saveT(t, db); s.States != 1 {
		t.Fatalf("%d states after dropping b", s.States)
	}
	// Older retained snapshots keep what they held.
	b := newStateT(t, db, "b", 0)
	if err := db.ReloadFrom(s1.ID); err != nil || b.Get() != 2 {
		t.Fatalf("ReloadFrom(%d): b=%d, %v", s1.ID, b.Get(), err)
	}
}

// A failed migration changes nothing: not the state, not the disk.
func TestFailedMigrationChangesNothing(t *testing.T) {
	dir := savedDir(t, "n", 7)
	before := dirFiles(t, dir)
	db := openT(t, dir)
	_, err := NewState(db, "n", "", MigrateFrom(0, func(int) (string, error) { return "", errors.New("no good") }))
	if err == nil || !strings.Contains(err.Error(), "no good") || !strings.Contains(err.Error(), `"n"`) {
		t.Fatalf("failed migration: %v", err)
	}
	if s, _ := db.Snapshots(); len(s) != 1 {
		t.Fatalf("%d snapshots", len(s))
	}
	db.Close()
	if after := dirFiles(t, dir); !bytes.Equal(after, before) {
		t.Fatalf("the directory changed:\n%s\n%s", before, after)
	}
	// A stored schema newer than the program's, or one without a
	// migration, is a clear error.
	db = openT(t, dir)
	db.Close()
}

// dirFiles lists the DB's files with their contents' sizes, but for the
// manifest, which every open starts anew.
func dirFiles(t *testing.T, dir string) []byte {
	var out bytes.Buffer
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "MANIFEST-") || e.Name() == "CURRENT" {
			continue
		}
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		fmt.Fprintf(&out, "%s %d %x\n", e.Name(), len(data), data[:min(len(data), 64)])
	}
	return out.Bytes()
}

func TestSchemaErrors(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	newStateT(t, db, "n", 7, MigrateFrom(0, func(s string) (int, error) { return len(s), nil }))
	saveT(t, db) // schema 1
	db.Close()
	db = openT(t, dir)
	var de *DecodeError
	if _, err := NewState(db, "n", 0); !errors.As(err, &de) || de.State != "n" || !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), "run the newer program") {
		t.Fatalf("a schema newer than the program's: %v", err)
	}
	if _, err := NewState(db, "n", 0, MigrateFrom(1, func(s string) (int, error) { return 0, nil }), MigrateFrom(1, func(s string) (int, error) { return 0, nil })); err == nil {
		t.Fatal("two migrations from one schema accepted")
	}
	if _, err := NewState(db, "n", 0, MigrateFrom(5, func(s string) (int, error) { return 0, nil })); !errors.As(err, &de) || !strings.Contains(err.Error(), "no migration from schema version 1") {
		t.Fatalf("no migration from the stored schema: %v", err)
	}
	if _, err := NewState(db, "n", 0, MigrateFrom(0, func(c chan int) (int, error) { return 0, nil })); !errors.Is(err, ErrUnsupportedType) {
		t.Fatalf("a migration from an unstorable type: %v", err)
	}
	if s, err := NewState(db, "n", 0, MigrateFrom(0, func(s string) (int, error) { return 0, nil })); err != nil || s.Get() != 7 {
		t.Fatalf("schema 1 loads as is: %v", err)
	}
}

// Names: valid UTF-8 without control characters; messages quote them and
// cut them at 64 bytes.
func TestNames(t *testing.T) {
	db := openT(t, t.TempDir())
	for _, bad := range []string{"", "a\x00b", "line\nbreak", "\xff\xfe", "tab\there", strings.Repeat("n", MaxNameLen+1)} {
		_, err := NewState(db, bad, 0)
		if !errors.Is(err, ErrBadName) {
			t.Fatalf("%q: %v", bad, err)
		}
		if len(err.Error()) > 300 {
			t.Fatalf("the message echoes the whole name: %d bytes", len(err.Error()))
		}
	}
	if _, err := NewMap[string, int](db, strings.Repeat("m", MaxMapNameLen+1)); !errors.Is(err, ErrBadName) {
		t.Fatalf("long map name: %v", err)
	}
	for _, good := range []string{"ok", "ünïcödé", "with space", "日本", strings.Repeat("n", MaxNameLen)} {
		newStateT(t, db, good, 0)
	}
	if q := quote(strings.Repeat("é", 100)); !strings.HasSuffix(q, "(200 bytes)") || len(q) > 90 {
		t.Fatalf("quote: %s", q)
	}
}

// Messages say what is true once: no repeated prefix, no repeated name.
func TestMessages(t *testing.T) {
	dir := savedDir(t, "p", "a string")
	db := openT(t, dir)
	_, err := NewState(db, "p", 0)
	if msg := err.Error(); strings.Count(msg, "instadump:") != 1 || strings.Count(msg, `"p"`) != 1 {
		t.Fatalf("the message stutters: %s", msg)
	}
	// A Save with nothing changed returns the snapshot as it was.
	s := newStateT(t, db, "q", 1)
	s1 := saveT(t, db)
	s2 := saveT(t, db)
	if s1 != s2 || s1.Bytes == 0 {
		t.Fatalf("nothing changed: %+v then %+v", s1, s2)
	}
	_ = s
}

// A map changed in place (forbidden) is noticed when a Save finds nothing
// to write, and logged naming the state.
func TestInPlaceChangeIsLogged(t *testing.T) {
	var log bytes.Buffer
	db := openT(t, t.TempDir(), WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	s := newStateT(t, db, "scores", map[string]int{"a": 1})
	saveT(t, db)
	s.Get()["b"] = 2 // in place: instadump cannot see it
	saveT(t, db)
	if !strings.Contains(log.String(), "changed in place") || !strings.Contains(log.String(), "scores") {
		t.Fatalf("log: %s", log.String())
	}
}

// A DefState declared after Setup over a stored value of another type is
// logged, naming it; one at Setup fails Setup naming it and saying what
// to do.
func TestLateDefStateIsLogged(t *testing.T) {
	dir := savedDir(t, "late-def", "a string")
	var log bytes.Buffer
	setupT(t, dir, WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	defer Shutdown()
	s := DefState("late-def", 0)
	if s.Get() != 0 || !strings.Contains(log.String(), "late-def") || !strings.Contains(log.String(), "NOT saved") {
		t.Fatalf("late DefState: %d, log %s", s.Get(), log.String())
	}
}

// pausingFS pauses the Save that creates a segment until resumed: a Save
// in flight, for what races with it.
type pausingFS struct {
	engine.FS
	paused, resume chan struct{}
}

func newPausingFS() *pausingFS {
	return &pausingFS{FS: vfs.NewMem(), paused: make(chan struct{}, 1), resume: make(chan struct{})}
}

func (p *pausingFS) Create(name string) (engine.File, error) {
	if strings.HasSuffix(name, ".seg") {
		select {
		case p.paused <- struct{}{}:
			<-p.resume
		default:
		}
	}
	return p.FS.Create(name)
}

// saveInFlight starts a Save and returns once it is under way (past its
// cut), with the function that lets it finish and returns its error.
func saveInFlight(t *testing.T, db *DB, fsys *pausingFS) func() error {
	errc := make(chan error, 1)
	go func() { _, err := db.Save(); errc <- err }()
	<-fsys.paused
	return func() error {
		fsys.resume <- struct{}{}
		return <-errc
	}
}

// A Drop made while a Save that writes the state is in flight is not
// lost: the next Save drops it.
func TestDropDuringSaveIsKept(t *testing.T) {
	fsys := newPausingFS()
	db := openT(t, "db", WithFS(fsys))
	newStateT(t, db, "x", 1).Set(2)
	finish := saveInFlight(t, db, fsys)
	if err := db.Drop("x"); err != nil {
		t.Fatal(err)
	}
	if err := finish(); err != nil {
		t.Fatal(err)
	}
	saveT(t, db)
	if got := newStateT(t, db, "x", -1).Get(); got != -1 {
		t.Fatalf("x = %d after its drop, want its default -1", got)
	}
	db.Close()
	db = openT(t, "db", WithFS(fsys))
	if _, ok := db.eng.Lookup(0, "x"); ok {
		t.Fatalf("x is still in the snapshot after its drop")
	}
}

// untilStopped calls f(0), f(1), ... in a goroutine of its own until f
// returns false or stop is called; stop waits for the goroutine to end.
func untilStopped(f func(n int) bool) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for n := 0; ; n++ {
			select {
			case <-quit:
				return
			default:
			}
			if !f(n) {
				return
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// Registering and dropping a state while Saves run never leaves a drop
// of a state the snapshot does not hold, which would fail every later
// Save.
func TestDropRacingSaveNeverWedges(t *testing.T) {
	db := openT(t, t.TempDir())
	other := newStateT(t, db, "other", 0)
	stop := untilStopped(func(i int) bool {
		if _, err := NewState(db, "x", i); err != nil && !errors.Is(err, ErrDuplicate) {
			t.Error(err)
			return false
		}
		db.Drop("x")
		db.Drop("x")
		return true
	})
	for i := range 300 {
		other.Set(i)
		if _, err := db.Save(); err != nil {
			stop()
			t.Fatalf("save %d: %v", i, err)
		}
	}
	stop()
	if err := db.Drop("x"); err == nil {
		saveT(t, db)
	}
	if err := db.Drop("x"); !errors.Is(err, ErrNoState) {
		t.Fatalf("Drop of a state neither registered nor saved: %v", err)
	}
}

// A Reload during an Update's function, from it or from another
// goroutine, is not undone by the Update: the Update comes before the
// Reload, whose values hold after both.
func TestReloadDuringUpdateHolds(t *testing.T) {
	db := openT(t, t.TempDir())
	s := newStateT(t, db, "s", 1)
	saveT(t, db)
	s.Set(2)
	got := s.Update(func(v int) int {
		if err := db.Reload(); err != nil {
			t.Error(err)
		}
		return v + 10
	})
	if got != 12 || s.Get() != 1 {
		t.Fatalf("Reload inside Update: Update returned %d, the state holds %d; want 12 and the reloaded 1", got, s.Get())
	}

	s.Set(3)
	inside, reloaded := make(chan struct{}), make(chan error)
	go func() {
		<-inside
		reloaded <- db.Reload()
	}()
	s.Update(func(v int) int {
		close(inside)
		if err := <-reloaded; err != nil {
			t.Error(err)
		}
		return v + 10
	})
	if s.Get() != 1 {
		t.Fatalf("Reload from another goroutine during Update: the state holds %d, want the reloaded 1", s.Get())
	}
	if got := s.Update(func(v int) int { return v + 1 }); got != 2 || s.Get() != 2 {
		t.Fatalf("Update after: %d", s.Get())
	}
}

// A migration from the largest schema number would make the state's
// schema wrap to 0: it is refused at registration, naming the state.
func TestMigrateFromMaxSchemaRefused(t *testing.T) {
	db := openT(t, t.TempDir())
	_, err := NewState(db, "n", 0, MigrateFrom(math.MaxUint64, func(s string) (int, error) { return len(s), nil }))
	if err == nil || !strings.Contains(err.Error(), `"n"`) || !strings.Contains(err.Error(), "18446744073709551615") {
		t.Fatalf("MigrateFrom(math.MaxUint64): %v", err)
	}
	if _, err := NewState(db, "n", 0, MigrateFrom(math.MaxUint64-1, func(s string) (int, error) { return len(s), nil })); err != nil {
		t.Fatalf("MigrateFrom(math.MaxUint64-1): %v", err)
	}
}

// A Drop while the state is being registered (its value loading) is
// refused, saying so: it would otherwise drop from disk a state that
// ends up registered, and clean, so never written again.
func TestDropDuringRegistration(t *testing.T) {
	dir := savedDir(t, "a", "stored")
	db := openT(t, dir)
	loading, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := NewState(db, "a", 0, MigrateFrom(0, func(s string) (int, error) {
			close(loading)
			<-release
			return len(s), nil
		}))
		done <- err
	}()
	<-loading
	err := db.Drop("a")
	close(release)
	if !errors.Is(err, ErrNoState) || !strings.Contains(err.Error(), "being registered") {
		t.Fatalf("Drop during registration: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	saveT(t, db)
	db.Close()
	db = openT(t, dir)
	s, err := NewState(db, "a", -1, MigrateFrom(0, func(s string) (int, error) { return -2, nil }))
	if err != nil || s.Get() != len("stored") {
		t.Fatalf("a after a refused drop: %v, %v; want the migrated %d", s, err, len("stored"))
	}
}

// A state that fails to load gives its own error, not a list of one:
// NewState's *DecodeError is one.
func TestRegisterErrorIsTheStates(t *testing.T) {
	db := openT(t, savedDir(t, "a", "stored"))
	_, err := NewState(db, "a", 0)
	if _, ok := err.(*DecodeError); !ok {
		t.Fatalf("NewState over a string as an int: %T %v", err, err)
	}
}

// A state dropped, registered again and reloaded holds the snapshot's
// value, and the Save after it keeps that value on disk instead of
// carrying out the drop the reload undid.
func TestReloadUndoesAPendingDrop(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	x := newStateT(t, db, "x", 0)
	x.Set(42)
	m := newMapT[string, int](t, db, "m")
	m.Set("k", 7)
	saveT(t, db)
	for _, n := range []string{"x", "m"} {
		if err := db.Drop(n); err != nil {
			t.Fatal(err)
		}
	}
	x2 := newStateT(t, db, "x", 0)
	m2 := newMapT[string, int](t, db, "m")
	if err := db.Reload(); err != nil {
		t.Fatal(err)
	}
	if v, _ := m2.Get("k"); x2.Get() != 42 || v != 7 {
		t.Fatalf("reloaded %d, %d", x2.Get(), v)
	}
	db.Save()
	db.Close()
	db = openT(t, dir)
	defer db.Close()
	v, _ := newMapT[string, int](t, db, "m").Get("k")
	if got := newStateT(t, db, "x", -1).Get(); got != 42 || v != 7 {
		t.Fatalf("after the Save: x %d, m[k] %d", got, v)
	}
}
