package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/replica"
	"github.com/instadump/instadump/replica/replicatest"
	"github.com/instadump/instadump/segment"
)

// A second DB replicating to the same location is fenced, and saves on.
func TestSecondDBIsFenced(t *testing.T) {
	st := replicatest.NewMemStore()
	a := openRepl(t, vfs.NewMem(), st, Options{})
	defer a.Close()
	commit(t, a, "who", "a")
	waitShipped(t, a, 1)

	bfs := vfs.NewMem()
	b := openRepl(t, bfs, st, Options{})
	commit(t, b, "who", "b")
	wantFenced(t, b, "the second DB", "another DB")
	if s, _ := b.ReplicaStatus(); !errors.Is(s.Stopped, ErrFenced) || !errors.Is(s.Err, ErrFenced) {
		t.Fatalf("status: %+v", s)
	}
	commit(t, b, "who", "b2") // local saves go on
	b.Close()
	if got := restored(t, st, RestoreOptions{})["who"]; got != "a" {
		t.Fatalf("restored %q: the second DB's snapshot got in", got)
	}
	// Reopened, it is fenced again (its lineage was kept).
	b = openRepl(t, bfs, st, Options{})
	defer b.Close()
	wantFenced(t, b, "reopened", "")
}

// A DB restored from the owner takes the location over as a new lineage;
// the old owner is fenced; the timeline runs through both, and
// retention eventually deletes the old lineage's objects.
func TestRestoredTakesOver(t *testing.T) {
	st := replicatest.NewMemStore()
	a := openRepl(t, vfs.NewMem(), st, Options{Retain: 3})
	defer a.Close()
	want := map[uint64]map[string]string{}
	for i := range 3 {
		s := commit(t, a, "who", fmt.Sprint("a", i))
		want[s.ID] = contents(t, a, s.ID)
		waitShipped(t, a, s.ID)
	}
	// The machine is lost: restore snapshot 2 elsewhere and save on.
	m := vfs.NewMem()
	if _, err := Restore(context.Background(), st, dir, RestoreOptions{ID: 2, FS: m}); err != nil {
		t.Fatal(err)
	}
	b := openRepl(t, m, st, Options{Retain: 3})
	defer b.Close()
	s := commit(t, b, "who", "b")
	if s.ID != 3 {
		t.Fatalf("the restored DB saved snapshot %d", s.ID)
	}
	waitShipped(t, b, 3)
	// The old owner is fenced at its next snapshot.
	commit(t, a, "who", "a-late")
	wantFenced(t, a, "the old owner", "took the location over")
	// The timeline: a's 1 (and 2, unless b shipped its own 2 first),
	// then b's 3.
	snaps, err := ReplicaSnapshots(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	bl, _, _ := readLineage(m, dir)
	if len(snaps) != 3 || snaps[0].Lineage != bl.Parent.String() || snaps[2].Lineage != bl.ID.String() {
		t.Fatalf("the timeline: %+v", snaps)
	}
	r, _, _ := restoreTo(t, st, RestoreOptions{})
	if got := contents(t, r, 0)["who"]; got != "b" {
		t.Fatalf("newest restored: %q", got)
	}
	r.Close()
	r, _, _ = restoreTo(t, st, RestoreOptions{ID: 1})
	if got := contents(t, r, 0); !maps.Equal(got, want[1]) {
		t.Fatalf("snapshot 1 restored: %v", got)
	}
	r.Close()
	// b saves on: once the store keeps only b's snapshots, nothing of a
	// is left but its owner record.
	for i := range 5 {
		waitShipped(t, b, commit(t, b, "who", fmt.Sprint("b", i)).ID)
	}
	owners, snapKeys, segs := storeKeys(t, st)
	for _, k := range append(snapKeys, segs...) {
		if !strings.HasPrefix(k, replica.LineagePrefix(bl.ID)) {
			t.Fatalf("the store still holds %s of the old lineage", k)
		}
	}
	if len(owners) != 2 {
		t.Fatalf("owner records: %v", owners)
	}
	// A second restore of the old lineage cannot take over from b.
	m2 := vfs.NewMem()
	writeLineage(m2, dir, Lineage{ID: replica.Lineage{9}, Parent: bl.Parent, Fork: 2})
	c := openRepl(t, m2, st, Options{})
	defer c.Close()
	commit(t, c, "who", "c")
	wantFenced(t, c, "a second restore of the old owner", "")
}

// Two processes with copies of one DB directory: of their snapshots with
// one ID, one gets into the store; the other is fenced; no restore mixes
// them.
func TestCopiesOfOneDirectory(t *testing.T) {
	st := replicatest.NewMemStore()
	m := vfs.NewMem()
	a := openRepl(t, m, st, Options{})
	defer a.Close()
	commit(t, a, "who", "a", "n", "1")
	waitShipped(t, a, 1)
	twin := m.CrashClone(vfs.CrashOptions{}) // what was synced: the whole directory
	b := openRepl(t, twin, st, Options{})
	defer b.Close()
	waitShipped(t, b, 1) // it resumes: snapshot 1 is its own too

	commit(t, a, "who", "a2")
	waitShipped(t, a, 2)
	commit(t, b, "who", "b2")
	wantFenced(t, b, "the copy", "copy of this DB's directory")
	if got := restored(t, st, RestoreOptions{})["who"]; got != "a2" {
		t.Fatalf("restored %q", got)
	}
	// Reopened, a copy that is behind the store is fenced at once.
	b.Close()
	b = openRepl(t, twin, st, Options{})
	defer b.Close()
	wantFenced(t, b, "the copy reopened", "")
}

// shippedThenDamaged returns a closed DB (retaining 3) that shipped
// snapshots 1 and 2 of state "a" to its store, its lineage then, and
// segment 2 damaged: a fallback open goes back to snapshot 1.
func shippedThenDamaged(t *testing.T) (*vfs.MemFS, *replicatest.MemStore, Lineage) {
	t.Helper()
	st := replicatest.NewMemStore()
	m := vfs.NewMem()
	e := openRepl(t, m, st, Options{Retain: 3})
	commit(t, e, "a", "1")
	commit(t, e, "a", "2")
	waitShipped(t, e, 2)
	old, _, _ := readLineage(m, dir)
	e.Close()
	rewrite(t, m, segment.FileName(2), flipAt(segment.HeaderSize+segment.ChunkHeaderSize))
	return m, st, old
}

// waitShipFails waits until e's shipping reports an error, and returns
// the status then; it fails the test with what if it never does.
func waitShipFails(t *testing.T, e *Engine, what string) replica.Status {
	t.Helper()
	for deadline := time.Now().Add(hangGuard); ; time.Sleep(time.Millisecond) {
		if s, _ := e.ReplicaStatus(); s.Err != nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
	}
}

// lineageFull is m where writing LINEAGE fails with ENOSPC while full
// is true: a disk too full for its temporary file.
func lineageFull(m *vfs.MemFS, full *atomic.Bool) FS {
	return vfs.WithErrors(m, vfs.InjectorFunc(func(op vfs.Op) error {
		if full.Load() && strings.HasSuffix(op.Path, lineageTmp) {
			return syscall.ENOSPC
		}
		return nil
	}))
}

// A DB that fell back to an older snapshot than it shipped replicates on
// as a new lineage that takes over from its old one.
func TestFallbackStartsALineage(t *testing.T) {
	m, st, old := shippedThenDamaged(t)
	e := openRepl(t, m, st, Options{Retain: 3, Fallback: true})
	defer e.Close()
	if !e.Report().FellBack {
		t.Fatal("no fallback")
	}
	s := commit(t, e, "a", "2'")
	waitShipped(t, e, s.ID)
	now, _, _ := readLineage(m, dir)
	if now.ID == old.ID || now.Parent != old.ID || now.Fork != 1 {
		t.Fatalf("lineage after fallback: %+v (was %+v)", now, old)
	}
	if got := restored(t, st, RestoreOptions{})["a"]; got != "2'" {
		t.Fatalf("restored %q", got)
	}
}

func TestLineageFile(t *testing.T) {
	m := vfs.NewMem()
	m.MkdirAll(dir)
	// Version 1, without the shipped line, still reads.
	v1 := Lineage{ID: replica.Lineage{5}, Parent: replica.Lineage{6}, Fork: 3}
	if got, err := decodeLineage(encodeLineageVersion(v1, 1), "LINEAGE"); err != nil || got != v1 {
		t.Fatalf("version 1: %+v %v", got, err)
	}
	// Version 2, with the shipped snapshot alone, still reads.
	v2 := Lineage{ID: replica.Lineage{7}, Shipped: 4, ShippedKnown: true}
	if got, err := decodeLineage(encodeLineageVersion(v2, 2), "LINEAGE"); err != nil || got != v2 {
		t.Fatalf("version 2: %+v %v", got, err)
	}
	// Version 3, without the via line, still reads.
	v3 := Lineage{ID: replica.Lineage{8}, Parent: replica.Lineage{9}, Fork: 2, Shipped: 4, ShippedSum: 5, Prev: 3, PrevSum: 6, ShippedKnown: true, SumsKnown: true}
	if got, err := decodeLineage(encodeLineageVersion(v3, 3), "LINEAGE"); err != nil || got != v3 {
		t.Fatalf("version 3: %+v %v", got, err)
	}
	for _, l := range []Lineage{
		{ID: replica.Lineage{1, 2}, ShippedKnown: true, SumsKnown: true},
		{ID: replica.Lineage{3}, Parent: replica.Lineage{4}, Fork: 17, Shipped: 42, ShippedSum: 1<<64 - 1, Prev: 41, PrevSum: 0xabc, ShippedKnown: true, SumsKnown: true},
		{ID: replica.Lineage{3}, Parent: replica.Lineage{4}, Fork: 2, ShippedKnown: true, SumsKnown: true, Via: [maxVia]replica.Lineage{{5}}},
		{ID: replica.Lineage{3}, Parent: replica.Lineage{4}, Fork: 1, ShippedKnown: true, SumsKnown: true, Via: [maxVia]replica.Lineage{{5}, {6}, {7}}},
	} {
		if err := writeLineage(m, dir, l); err != nil {
			t.Fatal(err)
		}
		got, ok, err := readLineage(m, dir)
		if err != nil || !ok || got != l {
			t.Fatalf("read back %+v %v %v, want %+v", got, ok, err, l)
		}
		b := encodeLineage(l)
		for i := range b {
			d := slices.Clone(b)
			d[i] ^= 0x01
			if _, err := decodeLineage(d, "LINEAGE"); !errors.Is(err, errs.ErrCorrupt) && !errors.Is(err, errs.ErrUnsupportedVersion) {
				t.Fatalf("byte %d flipped: %v", i, err)
			}
		}
		for n := range len(b) {
			if _, err := decodeLineage(b[:n], "LINEAGE"); !errors.Is(err, errs.ErrCorrupt) {
				t.Fatalf("cut at %d: %v", n, err)
			}
		}
	}
	if _, ok, err := readLineage(vfs.NewMem(), dir); ok || err != nil {
		t.Fatalf("no LINEAGE: %v %v", ok, err)
	}
	// A damaged LINEAGE stops Open with replication, saying so.
	rewrite(t, m, LineageFile, flipAt(20))
	m.MkdirAll(dir)
	if _, err := Open(dir, Options{FS: m, Replica: replOpts(replicatest.NewMemStore(), 0)}); !errors.Is(err, errs.ErrCorrupt) || !strings.Contains(err.Error(), LineageFile) {
		t.Fatalf("Open with a damaged LINEAGE: %v", err)
	}
	if _, err := Open(dir, Options{FS: m, ReadOnly: true, Replica: replOpts(replicatest.NewMemStore(), 0)}); err == nil {
		t.Fatal("a read-only open replicates")
	}
}

// Two copies of one directory that ship snapshots of other IDs, which no
// Create of one ID decides between. The copy that opens to find the
// store's newest snapshot is neither one it retains nor the last it
// shipped is fenced at once; the one that ships after the other finds a
// commit object it did not make, newer than its last, and is fenced.
// The store's newest snapshot is the other's.
func TestCopiesShippingOtherIDs(t *testing.T) {
	st := replicatest.NewMemStore()
	m, twin := shippedAndCopied(t, st)
	b := open(t, twin, Options{}) // saves on without replicating: 5 to 8
	for i := 5; i <= 8; i++ {
		commit(t, b, "x", fmt.Sprint("b", i))
	}
	b.Close()
	a := openRepl(t, m, st, Options{})
	defer a.Close()
	commit(t, a, "x", "a5")
	waitShipped(t, a, 5)
	b = openRepl(t, twin, st, Options{})
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	commit(t, b, "x", "b9")
	bErr := b.WaitReplicated(ctx, 9) // shipped (nil), or fenced
	commit(t, a, "x", "a6")
	aErr := a.WaitReplicated(ctx, 6)
	for _, err := range []error{aErr, bErr} {
		if err != nil && !errors.Is(err, ErrFenced) {
			t.Fatal(err)
		}
	}
	if aErr != nil || !errors.Is(bErr, ErrFenced) || !strings.Contains(bErr.Error(), "not one this directory shipped last (4)") {
		t.Fatalf("a: %v, b: %v: want the copy fenced", aErr, bErr)
	}
	want := "a6"
	if got := restored(t, st, RestoreOptions{})["x"]; got != want {
		t.Fatalf("restored %q, want %q (a: %v, b: %v)", got, want, aErr, bErr)
	}
}

// The same, when the copy is the one that ships first: the other finds
// its commit object before creating its own, and is fenced.
func TestCopyShipsFirst(t *testing.T) {
	st := replicatest.NewMemStore()
	m := vfs.NewMem()
	a := openRepl(t, m, st, Options{})
	defer a.Close()
	for i := 1; i <= 4; i++ {
		commit(t, a, "x", fmt.Sprint("a", i))
	}
	waitShipped(t, a, 4)
	b := openRepl(t, m.CrashClone(vfs.CrashOptions{}), st, Options{})
	defer b.Close()
	waitShipped(t, b, 4) // its own too
	for i := 5; i <= 8; i++ {
		commit(t, b, "x", fmt.Sprint("b", i))
	}
	waitShipped(t, b, 8)
	commit(t, a, "x", "a5")
	wantFenced(t, a, "the directory the copy was made of", "did not ship")
	if got := restored(t, st, RestoreOptions{})["x"]; got != "b8" {
		t.Fatalf("restored %q", got)
	}
}

// A directory that saved on without replicating, past the snapshots it
// retains, is not taken for a copy: the store's newest is the last it
// shipped.
func TestSavedOnWithoutReplicating(t *testing.T) {
	st := replicatest.NewMemStore()
	m := vfs.NewMem()
	a := openRepl(t, m, st, Options{Retain: 2})
	commit(t, a, "x", "1")
	commit(t, a, "x", "2")
	waitShipped(t, a, 2)
	a.Close()
	a = open(t, m, Options{Retain: 2})
	for i := 3; i <= 8; i++ {
		commit(t, a, "x", fmt.Sprint(i))
	}
	a.Close()
	a = openRepl(t, m, st, Options{Retain: 2})
	defer a.Close()
	waitShipped(t, a, 8)
	if l, _, err := readLineage(m, dir); err != nil || l.Shipped != 8 {
		t.Fatalf("LINEAGE %+v %v: want shipped 8", l, err)
	}
}

// A DB killed while a commit object it created is in the store, unknown
// to it (the Create's answer lost), having saved on past what it retains:
// reopened, it is not taken for a copy, since it noted the snapshot
// before shipping it.
func TestKilledMidShipIsNotFenced(t *testing.T) {
	mem := replicatest.NewMemStore()
	fs := replicatest.NewFaultStore(mem)
	m := vfs.NewMem()
	ro := retrying(fs, 0, time.Hour)
	a := open(t, m, Options{Retain: 2, Replica: ro})
	defer a.Close()
	commit(t, a, "x", "1")
	waitShipped(t, a, 1)
	fs.Inject(replicatest.Fault{Ops: replicatest.OpCreate, N: 1, Err: replicatest.ErrTransient, Mode: replicatest.After})
	commit(t, a, "x", "2")
	waitShipFails(t, a, "the Create did not fail")
	commit(t, a, "x", "3")
	commit(t, a, "x", "4")
	twin := m.CrashClone(vfs.CrashOptions{}) // killed: no Close
	b := openRepl(t, twin, mem, Options{Retain: 2})
	defer b.Close()
	commit(t, b, "x", "5")
	waitShipped(t, b, 5)
}

// A copy made before the directory shipped anything is fenced at open
// once the other has shipped: "shipped 0" is known, not unknown.
func TestCopyBeforeFirstShip(t *testing.T) {
	mem := replicatest.NewMemStore()
	fs := replicatest.NewFaultStore(mem)
	fs.Inject(replicatest.Fault{Ops: replicatest.OpAll, N: 1, All: true, Err: replicatest.ErrTransient})
	m := vfs.NewMem()
	a := openRepl(t, m, fs, Options{})
	defer a.Close()
	commit(t, a, "x", "a1")
	twin := m.CrashClone(vfs.CrashOptions{})
	b := open(t, twin, Options{})
	for i := 2; i <= 8; i++ {
		commit(t, b, "x", fmt.Sprint("b", i))
	}
	b.Close()
	fs.Clear()
	commit(t, a, "x", "a2")
	waitShipped(t, a, 2)
	b = openRepl(t, twin, mem, Options{})
	defer b.Close()
	commit(t, b, "x", "b9")
	wantFenced(t, b, "the copy", "not one this directory shipped last (0)")
}

// A fallback in an open that does not replicate starts the new lineage
// all the same: the next open that replicates takes the location over
// instead of being fenced by the old lineage's newer snapshots.
func TestFallbackWithoutReplicaStartsALineage(t *testing.T) {
	m, st, old := shippedThenDamaged(t)
	e := open(t, m, Options{Retain: 3, Fallback: true})
	if !e.Report().FellBack {
		t.Fatal("no fallback")
	}
	e.Close()
	if now, _, _ := readLineage(m, dir); now.ID == old.ID || now.Parent != old.ID || now.Fork != 1 {
		t.Fatalf("lineage after fallback: %+v (was %+v)", now, old)
	}
	e = openRepl(t, m, st, Options{Retain: 3})
	defer e.Close()
	s := commit(t, e, "a", "2'")
	waitShipped(t, e, s.ID)
}

// A note that cannot be written (a full disk, for a while) holds the
// snapshot back until it can: LINEAGE always notes everything shipped,
// and the next open is not fenced by a snapshot it shipped and no longer
// retains.
func TestFailedNoteHoldsShippingBack(t *testing.T) {
	st := replicatest.NewMemStore()
	m := vfs.NewMem()
	var full atomic.Bool
	fsys := lineageFull(m, &full)
	e := openRepl(t, fsys, st, Options{Retain: 2})
	commit(t, e, "x", "1")
	waitShipped(t, e, 1)
	full.Store(true)
	commit(t, e, "x", "2")
	if s := waitShipFails(t, e, "the note did not fail"); s.Shipped != 1 || !strings.Contains(s.Err.Error(), LineageFile) {
		t.Fatalf("status %+v", s)
	}
	full.Store(false)
	waitShipped(t, e, 2)
	e.Close()
	if l, _, _ := readLineage(m, dir); l.Shipped != 2 {
		t.Fatalf("LINEAGE notes %d shipped, want 2", l.Shipped)
	}
	e = open(t, m, Options{Retain: 2}) // saves on past what it retains
	commit(t, e, "x", "3")
	commit(t, e, "x", "4")
	e.Close()
	e = openRepl(t, m, st, Options{Retain: 2})
	defer e.Close()
	waitShipped(t, e, 4)
}

// A fallback whose new lineage cannot be noted fails the open, changing
// nothing; the open after it falls back and forks.
func TestFallbackNotedFirst(t *testing.T) {
	st := replicatest.NewMemStore()
	m := vfs.NewMem()
	e := openRepl(t, m, st, Options{Retain: 3})
	for i := 1; i <= 3; i++ {
		commit(t, e, "a", fmt.Sprint(i))
	}
	waitShipped(t, e, 3)
	old, _, _ := readLineage(m, dir)
	e.Close()
	rewrite(t, m, segment.FileName(3), flipAt(segment.HeaderSize+segment.ChunkHeaderSize))
	before := files(t, m)
	var always atomic.Bool
	always.Store(true)
	full := lineageFull(m, &always)
	if _, err := Open(dir, Options{FS: full, Retain: 3, Fallback: true}); err == nil || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("open: %v", err)
	}
	if after := files(t, m); !slices.Equal(before, after) {
		t.Fatalf("files %v, then %v", before, after)
	}
	// Nor when LINEAGE does not read (an I/O error; damage), replicating
	// or not.
	unreadable := vfs.WithErrors(m, vfs.InjectorFunc(func(op vfs.Op) error {
		if op.Kind == vfs.OpOpen && strings.HasSuffix(op.Path, "/"+LineageFile) {
			return syscall.EIO
		}
		return nil
	}))
	for _, o := range []Options{{FS: unreadable, Retain: 3, Fallback: true}, {FS: unreadable, Retain: 3, Fallback: true, Replica: replOpts(st, 0)}} {
		if _, err := Open(dir, o); err == nil || !strings.Contains(err.Error(), "nothing was changed") {
			t.Fatalf("open with LINEAGE unreadable: %v", err)
		}
		if after := files(t, m); !slices.Equal(before, after) {
			t.Fatalf("files %v, then %v", before, after)
		}
	}
	e = openRepl(t, m, st, Options{Retain: 3, Fallback: true})
	defer e.Close()
	if now, _, _ := readLineage(m, dir); now.Parent != old.ID || now.Fork != 2 {
		t.Fatalf("lineage %+v (was %+v)", now, old)
	}
	s := commit(t, e, "a", "3'")
	waitShipped(t, e, s.ID)
}

// A DB that falls back to a snapshot no older than any it shipped keeps
// its lineage: a restored DB that never shipped, or a DB that falls back
// twice before it replicates again, takes the location over as before.
func TestFallbackBeforeShippingKeepsTheLineage(t *testing.T) {
	damageNewest := func(t *testing.T, m *vfs.MemFS, e *Engine) {
		cur, _ := e.Current()
		id, _ := e.Lookup(cur.ID, "a")
		e.Close()
		rewrite(t, m, segment.FileName(id.Value.Segment), flipAt(segment.HeaderSize+segment.ChunkHeaderSize))
	}
	fallBack := func(t *testing.T, m *vfs.MemFS) {
		e := open(t, m, Options{Fallback: true})
		if !e.Report().FellBack {
			t.Fatal("no fallback")
		}
		e.Close()
	}
	t.Run("restored", func(t *testing.T) {
		st := replicatest.NewMemStore()
		a := openRepl(t, vfs.NewMem(), st, Options{})
		commit(t, a, "a", "1")
		commit(t, a, "a", "2")
		waitShipped(t, a, 2)
		a.Close()
		m := vfs.NewMem()
		if _, err := Restore(context.Background(), st, dir, RestoreOptions{FS: m}); err != nil {
			t.Fatal(err)
		}
		restored, _, _ := readLineage(m, dir)
		e := open(t, m, Options{})
		commit(t, e, "a", "3")
		commit(t, e, "a", "4")
		damageNewest(t, m, e)
		fallBack(t, m)
		if l, _, _ := readLineage(m, dir); l.ID != restored.ID {
			t.Fatalf("lineage %+v, want the restored one %+v", l, restored)
		}
		e = openRepl(t, m, st, Options{})
		defer e.Close()
		s := commit(t, e, "a", "4'")
		waitShipped(t, e, s.ID)
	})
	t.Run("twice", func(t *testing.T) {
		st := replicatest.NewMemStore()
		m := vfs.NewMem()
		e := openRepl(t, m, st, Options{})
		for i := 1; i <= 3; i++ {
			commit(t, e, "a", fmt.Sprint(i))
		}
		waitShipped(t, e, 3)
		damageNewest(t, m, e)
		fallBack(t, m) // a new lineage: 3 was shipped
		e = open(t, m, Options{})
		commit(t, e, "a", "3'")
		commit(t, e, "a", "4'")
		damageNewest(t, m, e)
		fallBack(t, m) // the same: nothing of it was shipped
		e = openRepl(t, m, st, Options{})
		defer e.Close()
		s := commit(t, e, "a", "4''")
		waitShipped(t, e, s.ID)
	})
}

// A second fallback, to a snapshot older than where the first one's
// lineage began, begins again from that snapshot of the lineage before:
// the store never serves the snapshots it fell back past.
func TestFallbackBelowTheFork(t *testing.T) {
	st := replicatest.NewMemStore()
	m := vfs.NewMem()
	e := openRepl(t, m, st, Options{Retain: 5, Replica: replOpts(st, 5)})
	for i := 1; i <= 4; i++ {
		commit(t, e, "a", fmt.Sprint(i))
		waitShipped(t, e, uint64(i))
	}
	l1, _, _ := readLineage(m, dir)
	e.Close()
	rewrite(t, m, segment.FileName(4), flipAt(segment.HeaderSize+segment.ChunkHeaderSize))
	e = open(t, m, Options{Retain: 5, Fallback: true}) // back to 3
	commit(t, e, "b", "x")                             // 4': a stays in segment 3
	e.Close()
	rewrite(t, m, segment.FileName(3), flipAt(segment.HeaderSize+segment.ChunkHeaderSize))
	e = open(t, m, Options{Retain: 5, Fallback: true}) // back to 2
	if e.Report().UsedID != 2 {
		t.Fatalf("fell back to %d", e.Report().UsedID)
	}
	commit(t, e, "a", "3''")
	commit(t, e, "a", "4''")
	e.Close()
	if l, _, _ := readLineage(m, dir); l.Parent != l1.ID || l.Fork != 2 {
		t.Fatalf("lineage %+v, want parent %s fork 2", l, l1.ID)
	}
	e = openRepl(t, m, st, Options{Retain: 5, Replica: replOpts(st, 5)})
	defer e.Close()
	s := commit(t, e, "a", "5''")
	waitShipped(t, e, s.ID)
	// The old 3 (a=3) is not in the store's history any more.
	if _, err := Restore(context.Background(), st, "r3", RestoreOptions{ID: 3, FS: vfs.NewMem()}); !errors.Is(err, errs.ErrNoSnapshot) {
		t.Fatalf("restore of snapshot 3: %v", err)
	}
	if got := restored(t, st, RestoreOptions{})["a"]; got != "5''" {
		t.Fatalf("restored a=%q", got)
	}
}

// A copy whose note names a snapshot it never got into the store (its
// Create failed) is not taken for the one that did: the store's newest
// snapshot of that ID has another checksum.
func TestCopyWhoseCreateFailed(t *testing.T) {
	mem := replicatest.NewMemStore()
	m := vfs.NewMem()
	a := openRepl(t, m, mem, Options{Retain: 2})
	for i := 1; i <= 4; i++ {
		commit(t, a, "x", fmt.Sprint("a", i))
	}
	waitShipped(t, a, 4)
	a.Close()
	twin := m.CrashClone(vfs.CrashOptions{})
	fs := replicatest.NewFaultStore(mem)
	fs.Inject(replicatest.Fault{Ops: replicatest.OpCreate, N: 1, All: true, Err: replicatest.ErrTransient})
	b := openRepl(t, twin, fs, Options{Retain: 2})
	commit(t, b, "x", "b5") // noted, then its Create fails
	waitShipFails(t, b, "the Create did not fail")
	b.Close()
	b = open(t, twin, Options{Retain: 2})
	commit(t, b, "x", "b6")
	commit(t, b, "x", "b7") // 5 is no longer retained
	b.Close()
	a = openRepl(t, m, mem, Options{Retain: 2})
	defer a.Close()
	commit(t, a, "x", "a5")
	waitShipped(t, a, 5)
	b = openRepl(t, twin, mem, Options{Retain: 2})
	defer b.Close()
	commit(t, b, "x", "b8")
	wantFenced(t, b, "the copy", "not one this directory shipped last (5)")
}

// A DB restored from a snapshot of a lineage older than the location's
// owner (one from before the owner's fork, or the newest when the owner
// took over but shipped nothing yet) takes the location over from the
// owner: the snapshot is on the owner's timeline.
func TestRestoreOfAnOlderLineageTakesOver(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   uint64 // the snapshot c restores
		old  string // what it holds
	}{
		{"before the owner's fork", 1, "a0"},
		{"the owner shipped nothing", 0, "a2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := replicatest.NewMemStore()
			a := openRepl(t, vfs.NewMem(), st, Options{})
			for i := range 3 {
				waitShipped(t, a, commit(t, a, "who", fmt.Sprint("a", i)).ID)
			}
			a.Close()
			al, _, _ := readLineage(a.fs, dir)
			// b, restored from a, owns the location.
			var b *Engine
			if tc.id != 0 {
				bfs := vfs.NewMem()
				if _, err := Restore(context.Background(), st, dir, RestoreOptions{ID: 2, FS: bfs}); err != nil {
					t.Fatal(err)
				}
				b = openRepl(t, bfs, st, Options{})
				defer b.Close()
				waitShipped(t, b, commit(t, b, "who", "b").ID)
			} else {
				// It took the location over and was lost before it
				// shipped a snapshot.
				o := replica.Owner{Seq: 2, Lineage: replica.Lineage{7}, Parent: al.ID, Fork: 3, Time: time.Now().UTC()}
				putObj(t, st, replica.OwnerKey(2), o.Encode())
			}
			cfs := vfs.NewMem()
			snap, err := Restore(context.Background(), st, dir, RestoreOptions{ID: tc.id, FS: cfs})
			if err != nil {
				t.Fatal(err)
			}
			c := openRepl(t, cfs, st, Options{})
			defer c.Close()
			s := commit(t, c, "who", "c")
			waitShipped(t, c, s.ID)
			if b != nil {
				commit(t, b, "who", "b-late")
				wantFenced(t, b, "the old owner", "took the location over")
			}
			r, _, got := restoreTo(t, st, RestoreOptions{})
			defer r.Close()
			if got.ID != s.ID || contents(t, r, 0)["who"] != "c" {
				t.Fatalf("restored %d %v, want c's snapshot %d", got.ID, contents(t, r, 0), s.ID)
			}
			r2, _, _ := restoreTo(t, st, RestoreOptions{ID: snap.ID})
			defer r2.Close()
			if contents(t, r2, 0)["who"] != tc.old {
				t.Fatalf("snapshot %d restored %v, want %s", snap.ID, contents(t, r2, 0), tc.old)
			}
		})
	}
}

// A fallback to a snapshot older than where the DB's lineage began,
// after that lineage took the location over (it shipped), takes it over
// from that lineage; and again from the next one, a level down. The
// store never serves what the DB fell back past.
func TestFallbackBelowTheForkAfterShipping(t *testing.T) {
	st := replicatest.NewMemStore()
	m := vfs.NewMem()
	o := Options{Retain: 5, Replica: replOpts(st, 5)}
	e := openRepl(t, m, st, o)
	for i := 1; i <= 4; i++ {
		waitShipped(t, e, commit(t, e, "a", fmt.Sprint(i)).ID)
	}
	e.Close()
	fallBack := func(to uint64, segs ...uint64) {
		t.Helper()
		for _, s := range segs {
			rewrite(t, m, segment.FileName(s), flipAt(segment.HeaderSize+segment.ChunkHeaderSize))
		}
		fo := o
		fo.Fallback = true
		e = openRepl(t, m, st, fo)
		if e.Report().UsedID != to {
			t.Fatalf("fell back to %d, want %d", e.Report().UsedID, to)
		}
	}
	restored := func(id uint64) string {
		t.Helper()
		r, _, _ := restoreTo(t, st, RestoreOptions{ID: id})
		defer r.Close()
		return contents(t, r, 0)["a"]
	}
	fallBack(3, 4)                               // a new lineage from 3
	waitShipped(t, e, commit(t, e, "b", "x").ID) // 4' (segment 5), a in segment 3
	e.Close()
	l2, _, _ := readLineage(m, dir)
	fallBack(2, 3) // below l2's fork
	if l, _, _ := readLineage(m, dir); l.Parent != l2.Parent || l.Fork != 2 || l.Via != [maxVia]replica.Lineage{l2.ID} {
		t.Fatalf("lineage %+v after %+v", l, l2)
	}
	waitShipped(t, e, commit(t, e, "a", "3''").ID) // segment 6: took over from l2
	if got := restored(0); got != "3''" {
		t.Fatalf("newest restored a=%q", got)
	}
	e.Close()
	fallBack(1, 2, 6) // below again
	s := commit(t, e, "a", "2'''")
	waitShipped(t, e, s.ID)
	defer e.Close()
	if got := restored(0); got != "2'''" || s.ID != 2 {
		t.Fatalf("newest restored a=%q (snapshot %d)", got, s.ID)
	}
	if got := restored(1); got != "1" {
		t.Fatalf("snapshot 1 restored a=%q", got)
	}
	for _, id := range []uint64{3, 4} {
		if _, err := Restore(context.Background(), st, "r", RestoreOptions{ID: id, FS: vfs.NewMem()}); !errors.Is(err, errs.ErrNoSnapshot) {
			t.Fatalf("restore of snapshot %d, which the DB fell back past: %v", id, err)
		}
	}
}

// The same when the lineage before claimed the location and then saved
// (shipped or not) before the second fallback.
func TestFallbackBelowTheForkAfterAClaim(t *testing.T) {
	st := replicatest.NewMemStore()
	m := vfs.NewMem()
	o := Options{Retain: 5, Replica: replOpts(st, 5)}
	e := openRepl(t, m, st, o)
	for i := 1; i <= 4; i++ {
		waitShipped(t, e, commit(t, e, "a", fmt.Sprint(i)).ID)
	}
	e.Close()
	rewrite(t, m, segment.FileName(4), flipAt(segment.HeaderSize+segment.ChunkHeaderSize))
	fo := o
	fo.Fallback = true
	e = openRepl(t, m, st, fo) // back to 3: a new lineage, which claims the location
	eventually(t, "no takeover", func() bool {
		owners, _, _ := storeKeys(t, st)
		return len(owners) == 2
	})
	commit(t, e, "b", "x")
	e.Close()
	rewrite(t, m, segment.FileName(3), flipAt(segment.HeaderSize+segment.ChunkHeaderSize))
	e = openRepl(t, m, st, fo) // back to 2
	defer e.Close()
	waitShipped(t, e, commit(t, e, "a", "3''").ID)
}

// gateStore holds each Create of a commit object at its gate while
// armed.
type gateStore struct {
	replica.Store
	armed   atomic.Bool
	atGate  chan string
	release chan struct{}
}

func newGateStore(st replica.Store) *gateStore {
	return &gateStore{Store: st, atGate: make(chan string, 1), release: make(chan struct{})}
}

func (g *gateStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	if g.armed.Load() && strings.Contains(key, "/snap/") {
		g.atGate <- key
		<-g.release
	}
	return g.Store.Create(ctx, key, r, size)
}

// Two copies of one directory, each between its List and its Create of
// snapshots of other IDs, where the List sees nothing of the other: the
// List after each Create sees the other's, and the copy that sees it
// deletes its own again and is fenced. Both with the copy's snapshot
// newer than the other's and older.
func TestCopiesRaceBetweenListAndCreate(t *testing.T) {
	t.Run("newer", func(t *testing.T) {
		mem := replicatest.NewMemStore()
		g := newGateStore(mem)
		m := vfs.NewMem()
		a := openRepl(t, m, g, Options{})
		defer a.Close()
		for i := 1; i <= 4; i++ {
			commit(t, a, "x", fmt.Sprint("a", i))
		}
		waitShipped(t, a, 4)
		twin := m.CrashClone(vfs.CrashOptions{})
		b := open(t, twin, Options{})
		commit(t, b, "x", "b5")
		commit(t, b, "x", "b6")
		b.Close()
		g.armed.Store(true)
		commit(t, a, "x", "a5")
		<-g.atGate // a listed and is about to create 5
		b = openRepl(t, twin, mem, Options{})
		defer b.Close()
		waitShipped(t, b, 6)
		close(g.release)
		wantFenced(t, a, "the copy that created second", "a copy of this DB's directory")
		_, snaps, _ := storeKeys(t, mem)
		if slices.ContainsFunc(snaps, func(k string) bool { return strings.HasSuffix(k, "5") }) || !strings.HasSuffix(snaps[len(snaps)-1], "6") {
			t.Fatalf("commit objects: %v, want b's 6 the newest, and no 5", snaps)
		}
		if got := restored(t, mem, RestoreOptions{})["x"]; got != "b6" {
			t.Fatalf("restored %q", got)
		}
	})
	t.Run("older", func(t *testing.T) {
		mem := replicatest.NewMemStore()
		m, twin := shippedAndCopied(t, mem)
		b := open(t, twin, Options{})
		commit(t, b, "x", "b5")
		b.Close()
		a := open(t, m, Options{})
		for i := 5; i <= 7; i++ {
			commit(t, a, "x", fmt.Sprint("a", i))
		}
		a.Close()
		g := newGateStore(mem)
		g.armed.Store(true)
		b = openRepl(t, twin, g, Options{})
		defer b.Close()
		<-g.atGate // b listed (nothing after 4) and is about to create 5
		a = openRepl(t, m, mem, Options{})
		defer a.Close()
		waitShipped(t, a, 7)
		close(g.release)
		wantFenced(t, b, "the copy with the older snapshot", "a copy of this DB's directory")
		waitShipped(t, a, commit(t, a, "x", "a8").ID)
		snaps, err := ReplicaSnapshots(context.Background(), mem)
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint64
		for _, s := range snaps {
			ids = append(ids, s.ID)
		}
		if slices.Contains(ids, 5) || ids[len(ids)-1] != 8 {
			t.Fatalf("the timeline: %v, want a's, without b's 5", ids)
		}
	})
}

// lateStore fails the first Create of a commit object while armed, as
// a timeout, without making it, and makes it at a later List of its
// lineage (after skip of them): an S3 PUT that times out on the client
// and completes on the server after the client read the key back.
type lateStore struct {
	replica.Store
	armed atomic.Bool
	mu    sync.Mutex
	key   string
	body  []byte
	skip  int
}

func (l *lateStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	if strings.Contains(key, "/snap/") && l.armed.CompareAndSwap(true, false) {
		b, _ := io.ReadAll(r)
		l.mu.Lock()
		l.key, l.body = key, b
		l.mu.Unlock()
		return fmt.Errorf("request timed out: %w", replica.ErrUnavailable)
	}
	return l.Store.Create(ctx, key, r, size)
}

func (l *lateStore) List(ctx context.Context, prefix string) ([]replica.Object, error) {
	l.mu.Lock()
	if l.key != "" && prefix == l.key[:strings.Index(l.key, "/")+1] {
		if l.skip--; l.skip < 0 {
			l.Store.Create(ctx, l.key, bytes.NewReader(l.body), int64(len(l.body)))
			l.key = ""
		}
	}
	l.mu.Unlock()
	return l.Store.List(ctx, prefix)
}

// A Create of this directory that lands after it read the object back
// as absent is its own, not a copy's: in the same process, and in the
// next one (which finds the Create noted in LINEAGE).
func TestLateCreateIsOurs(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprint("restart=", restart), func(t *testing.T) {
			ls := &lateStore{Store: replicatest.NewMemStore()}
			m := vfs.NewMem()
			ro := replOpts(ls, 0)
			// Slow enough that the failure shows before the retry.
			ro.RetryMin, ro.RetryMax = 100*time.Millisecond, 100*time.Millisecond
			if restart {
				ro.RetryMin, ro.RetryMax = time.Hour, time.Hour
			}
			a := open(t, m, Options{Retain: 2, Replica: ro})
			for i := 1; i <= 4; i++ {
				commit(t, a, "x", fmt.Sprint(i))
			}
			waitShipped(t, a, 4)
			ls.armed.Store(true)
			commit(t, a, "x", "5")
			waitShipFails(t, a, "the Create did not fail")
			if restart {
				// The process dies there; the next one ships on. The
				// Create lands after it read the store at start.
				ls.mu.Lock()
				ls.skip = 1
				ls.mu.Unlock()
				m = m.CrashClone(vfs.CrashOptions{})
				defer a.Close()
				a = openRepl(t, m, ls, Options{Retain: 2})
			}
			defer a.Close()
			waitShipped(t, a, commit(t, a, "x", "6").ID)
			if got := restored(t, ls, RestoreOptions{ID: 5})["x"]; got != "5" {
				t.Fatalf("snapshot 5 restored x=%q", got)
			}
		})
	}
}

// existsStore answers the first Create of a commit object while armed
// with ErrExists, though it does not hold it.
type existsStore struct {
	replica.Store
	armed atomic.Bool
}

func (e *existsStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	if strings.Contains(key, "/snap/") && e.armed.CompareAndSwap(true, false) {
		return replica.ErrExists
	}
	return e.Store.Create(ctx, key, r, size)
}

// A commit object that exists at its Create, then is not there when read
// back, is created again: the snapshot is not left unshipped until the
// next one.
func TestCommitObjectThereThenGone(t *testing.T) {
	es := &existsStore{Store: replicatest.NewMemStore()}
	a := openRepl(t, vfs.NewMem(), es, Options{})
	defer a.Close()
	waitShipped(t, a, commit(t, a, "x", "1").ID)
	es.armed.Store(true)
	waitShipped(t, a, commit(t, a, "x", "2").ID)
}
