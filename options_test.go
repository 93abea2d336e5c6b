package instadump

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/replica/replicatest"
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
	dir := savedDir(t, "a", "first", "second")
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
	db := openT(t, dir)
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

// A DB opened by a relative path stays where it was opened when the
// process changes its working directory: the next Save lands in it, and
// it reopens whole.
func TestRelativeDirSurvivesChdir(t *testing.T) {
	first, second := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(second, "db"), 0o755); err != nil { // a decoy
		t.Fatal(err)
	}
	t.Chdir(first)
	db := openT(t, "db")
	a := newStateT(t, db, "a", 0)
	a.Set(1)
	saveT(t, db)
	t.Chdir(second)
	a.Set(2)
	saveT(t, db)
	t.Chdir("/")
	a.Set(3)
	saveT(t, db)
	db.Close()
	db = openT(t, filepath.Join(first, "db"))
	if got := newStateT(t, db, "a", 0).Get(); got != 3 {
		t.Fatalf("reopened: a = %d, want 3", got)
	}
	if names, _ := os.ReadDir(filepath.Join(second, "db")); len(names) != 0 {
		t.Fatalf("files written into the other directory: %v", names)
	}
}

// Options that would make every Save fail are refused at Open.
func TestBadCompressionRefusedAtOpen(t *testing.T) {
	for _, l := range []Level{-5, LevelNone + 1, 99} {
		if db, err := Open(t.TempDir(), WithCompression(l)); err == nil {
			db.Close()
			t.Fatalf("WithCompression(%d) accepted", l)
		} else if !errors.Is(err, ErrBadOption) {
			t.Fatalf("WithCompression(%d): %v, want ErrBadOption", l, err)
		}
	}
}

// A segment the current snapshot needs, deleted by something else: the
// error names the file and says it is missing and what to do, not that
// it was damaged; fallback loads the snapshot before it.
func TestMissingSegmentSaysSo(t *testing.T) {
	dir := savedDir(t, "a", "first", "second")
	seg := filepath.Join(dir, segment.FileName(2))
	if err := os.Remove(seg); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir)
	var ce *CorruptError
	if !errors.Is(err, errs.ErrMissing) || !errors.As(err, &ce) || ce.File != seg || ce.Hint != errs.HintMissing {
		t.Fatalf("Open over a missing segment: %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "missing") || strings.Contains(msg, "damaged after it was written") {
		t.Fatalf("the message does not say the file is missing: %v", msg)
	}
	db := openT(t, dir, WithFallback())
	if got := newStateT(t, db, "a", "").Get(); got != "first" {
		t.Fatalf("fell back to a=%q", got)
	}
}

// An option whose value cannot mean what was asked, or options that
// contradict each other, fail Open with ErrBadOption, naming the value.
func TestBadOptionsAreErrBadOption(t *testing.T) {
	st := replicatest.NewMemStore()
	for _, tc := range []struct {
		opts []Option
		want string
	}{
		{[]Option{WithRetain(-1)}, "-1"},
		{[]Option{WithRetain(0)}, "WithRetain(0)"},
		{[]Option{WithReadOnly(), WithSaveOnClose()}, "never saves"},
		{[]Option{WithReadOnly(), WithAutoSave(time.Second)}, "never saves"},
		{[]Option{WithCompression(42)}, "42"},
		{[]Option{WithAutoSave(-time.Second)}, "-1s"},
		{[]Option{WithReplica(st), WithReplicaRetain(-1)}, "-1"},
		{[]Option{WithReplica(st), WithReplicaGrace(-time.Second)}, "-1s"},
		{[]Option{WithReplica(st), WithReadOnly()}, "read-only"},
	} {
		dir := t.TempDir()
		if db, err := Open(dir); err != nil {
			t.Fatal(err)
		} else {
			db.Close()
		}
		db, err := Open(dir, tc.opts...)
		if err == nil {
			db.Close()
			t.Fatalf("want %q refused", tc.want)
		}
		if !errors.Is(err, ErrBadOption) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrBadOption", tc.want, err)
		}
	}
}

// A bad replica option given with WithFallback fails Open before recovery
// falls back: nothing in the directory changes.
func TestBadReplicaOptionChangesNothing(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	x := newStateT(t, db, "x", 1)
	saveT(t, db)
	x.Set(2)
	saveT(t, db)
	db.Close()
	seg := filepath.Join(dir, segment.FileName(2))
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	os.WriteFile(seg, data, 0o644)
	before := dirFiles(t, dir)
	if _, err := Open(dir, WithFallback(), WithReplica(replicatest.NewMemStore()), WithReplicaRetain(-1)); !errors.Is(err, ErrBadOption) {
		t.Fatalf("open: %v", err)
	}
	if after := dirFiles(t, dir); !bytes.Equal(before, after) {
		t.Fatalf("the directory changed:\n%s\n%s", before, after)
	}
}
