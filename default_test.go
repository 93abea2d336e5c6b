package instadump

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The seed's style: states and maps declared at package level on the
// default DB.

var (
	defA = DefState("default-test-a", 150)
	defB = DefState("default-test-b", "abc")
)

// setupT sets up the default DB in dir, failing t if it cannot.
func setupT(t *testing.T, dir string, opts ...Option) {
	t.Helper()
	if err := Setup(dir, opts...); err != nil {
		t.Fatal(err)
	}
}

// saveAllT saves the default DB, failing t if it cannot.
func saveAllT(t *testing.T) {
	t.Helper()
	if _, err := SaveAll(); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultDB(t *testing.T) {
	dir := t.TempDir()
	if _, err := SaveAll(); !errors.Is(err, ErrClosed) {
		t.Fatalf("SaveAll before Setup: %v", err)
	}
	setupT(t, dir)
	if err := Setup(dir); err == nil {
		t.Fatal("second Setup succeeded")
	}
	defA.Set(1000)
	saveAllT(t)
	defA.Set(1)
	if err := ReloadAll(); err != nil || defA.Get() != 1000 {
		t.Fatalf("ReloadAll: %v, a=%d", err, defA.Get())
	}
	if Default() == nil {
		t.Fatal("no default DB")
	}
	if err := Shutdown(); err != nil {
		t.Fatal(err)
	}
	defA.Set(5) // after Shutdown: memory only
	setupT(t, dir)
	if defA.Get() != 1000 || defB.Get() != "abc" {
		t.Fatalf("after a second Setup: %d %q", defA.Get(), defB.Get())
	}
	Shutdown()

	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(r.(string), "twice") {
				t.Fatalf("duplicate DefState: %v", r)
			}
		}()
		DefState("default-test-a", 0)
	}()
}

func TestSetupNamesFailedStates(t *testing.T) {
	dir := savedDir(t, "default-test-a", "not an int")
	err := Setup(dir)
	if !errors.Is(err, ErrTypeMismatch) || !strings.Contains(err.Error(), `"default-test-a"`) {
		t.Fatalf("Setup: %v", err)
	}
	var de *DecodeError
	if !errors.As(err, &de) || de.State != "default-test-a" || de.Wanted != "int" {
		t.Fatalf("Setup's error holds no *DecodeError for the state: %v", err)
	}
	for _, todo := range []string{"opened nothing", "register it with a matching type", "MigrateFrom", "Drop"} {
		if !strings.Contains(err.Error(), todo) {
			t.Errorf("Setup's error does not say %q: %v", todo, err)
		}
	}
	if Default() != nil {
		t.Fatal("a failed Setup left a default DB")
	}
	// The directory is not left locked.
	openT(t, dir).Close()
}

// A DefState saved in one DB holds its default in the next one Setup
// opens, and that default is written there: nothing is taken as already
// saved in it (found running the tests twice in one process).
func TestDefStateMovesToANewDB(t *testing.T) {
	first, second := t.TempDir(), t.TempDir()
	setupT(t, first)
	defA.Set(42)
	saveAllT(t)
	Shutdown()
	setupT(t, second)
	defer Shutdown()
	saveAllT(t)
	if err := ReloadAll(); err != nil {
		t.Fatalf("ReloadAll in the second DB: %v", err)
	}
	Shutdown()
	db := openT(t, second)
	if got := newStateT(t, db, "default-test-a", 0).Get(); got != 150 {
		t.Fatalf("the second DB holds %d, want the default 150", got)
	}
}

var defMapTest = DefMap[string, int]("defmap-test")

// The seed's style: DefMap, then Setup.
func TestDefMap(t *testing.T) {
	dir := t.TempDir()
	m := defMapTest
	m.Set("before-setup", 1) // in memory only: Setup sets what dir holds
	setupT(t, dir)
	if m.Len() != 0 {
		t.Fatalf("after Setup of an empty DB: %d entries", m.Len())
	}
	m.Set("x", 2)
	saveAllT(t)
	Shutdown()
	m.Set("x", 3)
	setupT(t, dir)
	defer Shutdown()
	if v, _ := m.Get("x"); v != 2 || m.Len() != 1 {
		t.Fatalf("after Setup again: x=%d, %d entries", v, m.Len())
	}
}

// A DefState's Update before Setup may register states and maps on
// another DB: the new ones do not wait for the DefState's writers.
func TestRegisterInsideUnboundUpdate(t *testing.T) {
	d := DefState("default-test-unbound-update", 0)
	db := openT(t, t.TempDir())
	done := make(chan error, 1)
	go func() {
		var err error
		d.Update(func(v int) int {
			if _, err = NewState(db, "inner", 1); err == nil {
				_, err = NewMap[string, int](db, "inner-map")
			}
			return v + 1
		})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("NewState inside a DefState's Update before Setup never returned")
	}
	if d.Get() != 1 {
		t.Fatalf("Update lost: %d", d.Get())
	}
}

// Setup after Shutdown starts every declared state from what the new DB
// holds: a value from the DB set up before never carries over into one
// that has none.
func TestSetupAnotherDBCarriesNothingOver(t *testing.T) {
	x := DefState("default-test-carry-x", 1)
	m := DefMap[string, int]("default-test-carry-m")
	a, b := t.TempDir(), t.TempDir()
	setupT(t, a)
	x.Set(7)
	m.Set("k", 7)
	saveAllT(t)
	if err := Shutdown(); err != nil {
		t.Fatal(err)
	}
	setupT(t, b)
	if _, ok := m.Get("k"); x.Get() != 1 || ok || m.Len() != 0 {
		t.Fatalf("on a new DB after another: x=%d, map len %d", x.Get(), m.Len())
	}
	saveAllT(t)
	Shutdown()
	setupT(t, a)
	defer Shutdown()
	if v, _ := m.Get("k"); x.Get() != 7 || v != 7 {
		t.Fatalf("back on the first DB: x=%d k=%d", x.Get(), v)
	}
}

// A Setup that fails changes no state in memory: those that could load
// are not half set up.
func TestFailedSetupChangesNothing(t *testing.T) {
	dir := savedDirWith(t, func(db *DB) {
		newStateT(t, db, "default-test-fail-ok", 7)
		newStateT(t, db, "default-test-fail-bad", "a string")
	})
	ok := DefState("default-test-fail-ok", 1)
	bad := DefState("default-test-fail-bad", 2) // stored as a string
	err := Setup(dir)
	if !errors.Is(err, ErrTypeMismatch) || !strings.Contains(err.Error(), "default-test-fail-bad") {
		t.Fatalf("Setup over a mismatched state: %v", err)
	}
	if ok.Get() != 1 || bad.Get() != 2 {
		t.Fatalf("after a failed Setup: ok=%d bad=%d, want their defaults 1 and 2", ok.Get(), bad.Get())
	}
	ok.Set(3) // not bound to the DB that failed: memory only
	if Default() != nil {
		t.Fatal("a failed Setup left a default DB")
	}
}

// Close and Shutdown a second time say the DB is closed already: not
// that Setup was never called, and naming the directory.
func TestCloseTwice(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "closed already") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second Close: %v", err)
	}
	setupT(t, t.TempDir())
	if err := Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := Shutdown(); !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "shut down already") || strings.Contains(err.Error(), "call instadump.Setup first") {
		t.Fatalf("second Shutdown: %v", err)
	}
}
