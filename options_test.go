package instadump

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/instadump/instadump/segment"
)

func TestAutoSave(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, WithAutoSave(5*time.Millisecond))
	a := newStateT(t, db, "a", 1)
	a.Set(2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		snaps, _ := db.Snapshots()
		if len(snaps) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no automatic save within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(30 * time.Millisecond)
	snaps, _ := db.Snapshots()
	if len(snaps) != 1 {
		t.Fatalf("auto-save saved %d snapshots with nothing changed since the first", len(snaps))
	}
	if err := db.AutoSaveErr(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = openT(t, dir)
	if got := newStateT(t, db, "a", 0).Get(); got != 2 {
		t.Fatalf("a=%d", got)
	}
}

func TestSaveOnClose(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, WithSaveOnClose())
	newStateT(t, db, "a", 1).Set(7)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openT(t, dir)
	if got := newStateT(t, db, "a", 0).Get(); got != 7 {
		t.Fatalf("a=%d after save on close", got)
	}
}

func TestReadOnly(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	newStateT(t, db, "a", 1).Set(5)
	saveT(t, db)
	ro := openT(t, dir, WithReadOnly()) // beside the writer: no lock
	a := newStateT(t, ro, "a", 0)
	if a.Get() != 5 {
		t.Fatalf("read-only a=%d", a.Get())
	}
	a.Set(6)
	if _, err := ro.Save(); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("read-only save: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "missing"), WithReadOnly()); err == nil {
		t.Fatal("read-only open of a missing directory succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Fatal("read-only open created a directory")
	}
}

func TestDamagedCurrentSnapshot(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	a := newStateT(t, db, "a", "first")
	saveT(t, db)
	a.Set("second")
	saveT(t, db)
	db.Close()
	// Flip a byte inside the newest segment's value.
	var newest string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if _, ok := segment.ParseFileName(e.Name()); ok {
			newest = filepath.Join(dir, e.Name())
		}
	}
	data, _ := os.ReadFile(newest)
	data[segment.HeaderSize+segment.ChunkHeaderSize] ^= 1
	os.WriteFile(newest, data, 0o644)

	// Strict: the damage is found reading the value, naming the file.
	db = openT(t, dir)
	_, err := NewState(db, "a", "")
	var ce *CorruptError
	if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) || ce.File != newest {
		t.Fatalf("NewState on damaged data: %v", err)
	}
	db.Close()
	// Fallback: the older snapshot, said loudly, damaged file kept aside.
	db = openT(t, dir, WithFallback())
	rec := db.Recovery()
	if !rec.FellBack || rec.Damaged != 2 || rec.UsedID != 1 || !errors.Is(rec.Damage, ErrCorrupt) {
		t.Fatalf("recovery %+v", rec)
	}
	if got := newStateT(t, db, "a", "").Get(); got != "first" {
		t.Fatalf("fell back to a=%q", got)
	}
	if _, err := os.Stat(newest + ".broken"); err != nil {
		t.Fatalf("damaged segment not kept aside: %v", err)
	}
}

var (
	defA = DefState("default-test-a", 150)
	defB = DefState("default-test-b", "abc")
)

func TestDefaultDB(t *testing.T) {
	dir := t.TempDir()
	if _, err := SaveAll(); !errors.Is(err, ErrClosed) {
		t.Fatalf("SaveAll before Setup: %v", err)
	}
	if err := Setup(dir); err != nil {
		t.Fatal(err)
	}
	if err := Setup(dir); err == nil {
		t.Fatal("second Setup succeeded")
	}
	defA.Set(1000)
	if _, err := SaveAll(); err != nil {
		t.Fatal(err)
	}
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
	if err := Setup(dir); err != nil {
		t.Fatal(err)
	}
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
	dir := t.TempDir()
	db := openT(t, dir)
	newStateT(t, db, "default-test-a", "not an int")
	saveT(t, db)
	db.Close()
	err := Setup(dir)
	if !errors.Is(err, ErrTypeMismatch) || !strings.Contains(err.Error(), `"default-test-a"`) {
		t.Fatalf("Setup: %v", err)
	}
	if Default() != nil {
		t.Fatal("a failed Setup left a default DB")
	}
	// The directory is not left locked.
	openT(t, dir).Close()
}

// A DefState saved in one DB is written to the next one Setup opens, not
// taken as already saved there (found running the tests twice in one
// process).
func TestDefStateMovesToANewDB(t *testing.T) {
	first, second := t.TempDir(), t.TempDir()
	if err := Setup(first); err != nil {
		t.Fatal(err)
	}
	defA.Set(42)
	if _, err := SaveAll(); err != nil {
		t.Fatal(err)
	}
	Shutdown()
	if err := Setup(second); err != nil {
		t.Fatal(err)
	}
	defer Shutdown()
	if _, err := SaveAll(); err != nil {
		t.Fatal(err)
	}
	if err := ReloadAll(); err != nil {
		t.Fatalf("ReloadAll in the second DB: %v", err)
	}
	Shutdown()
	db := openT(t, second)
	if got := newStateT(t, db, "default-test-a", 0).Get(); got != 42 {
		t.Fatalf("the second DB holds %d", got)
	}
}
