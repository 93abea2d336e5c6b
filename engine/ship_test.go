package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/replica"
	"github.com/instadump/instadump/replica/replicatest"
	"github.com/instadump/instadump/segment"
)

// hangGuard bounds waits that must end: a test that reaches it has hung.
// It is not a timing threshold.
const hangGuard = 2 * time.Minute

func replOpts(st replica.Store, retain int) ReplicaOptions {
	return ReplicaOptions{Store: st, Retain: retain, RetryMin: time.Millisecond, RetryMax: 20 * time.Millisecond}
}

func openRepl(t *testing.T, fsys FS, st replica.Store, o Options) *Engine {
	t.Helper()
	if o.Replica.Store == nil {
		o.Replica = replOpts(st, 0)
	}
	return open(t, fsys, o)
}

func waitShipped(t *testing.T, e *Engine, id uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := e.WaitReplicated(ctx, id); err != nil {
		t.Fatal(err)
	}
}

// waitStopped waits until shipping stops, and returns why.
func waitStopped(t *testing.T, e *Engine) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	err := e.WaitReplicated(ctx, 1<<62)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("shipping did not stop")
	}
	return err
}

// wantFenced waits until e's shipping stops, and fails the test (saying
// what e is) unless it stopped fenced, with why in the message.
func wantFenced(t *testing.T, e *Engine, what, why string) {
	t.Helper()
	if err := waitStopped(t, e); !errors.Is(err, ErrFenced) || !strings.Contains(err.Error(), why) {
		t.Fatalf("%s: %v", what, err)
	}
}

// restoreTo restores from st into a new in-memory machine and opens the
// result as any DB directory is opened.
func restoreTo(t *testing.T, st replica.Store, o RestoreOptions) (*Engine, *vfs.MemFS, Snapshot) {
	t.Helper()
	m := vfs.NewMem()
	o.FS = m
	snap, err := Restore(context.Background(), st, dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return open(t, m, Options{}), m, snap
}

// retrying is replOpts with the backoff between failed rounds d.
func retrying(st replica.Store, retain int, d time.Duration) ReplicaOptions {
	o := replOpts(st, retain)
	o.RetryMin, o.RetryMax = d, d
	return o
}

// shippedAndCopied makes a DB that ships snapshots 1 to 4 (x = a1..a4)
// to st and closes, and returns its directory and a copy of it.
func shippedAndCopied(t *testing.T, st replica.Store) (m, copied *vfs.MemFS) {
	t.Helper()
	m = vfs.NewMem()
	a := openRepl(t, m, st, Options{})
	for i := 1; i <= 4; i++ {
		commit(t, a, "x", fmt.Sprint("a", i))
	}
	waitShipped(t, a, 4)
	a.Close()
	return m, m.CrashClone(vfs.CrashOptions{})
}

// eventually waits until cond holds, and fails the test with what if it
// does not within hangGuard.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(hangGuard); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
	}
}

// restored restores from st as o says into a new in-memory machine and
// returns the contents of the snapshot restored.
func restored(t *testing.T, st replica.Store, o RestoreOptions) map[string]string {
	t.Helper()
	r, _, _ := restoreTo(t, st, o)
	defer r.Close()
	return contents(t, r, 0)
}

func readFile(t *testing.T, fsys FS, name string) []byte {
	t.Helper()
	f, err := fsys.Open(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, _ := f.Size()
	b, err := vfs.ReadAll(f, size)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameSegments checks that every segment restored holds the bytes of the
// original's file.
func sameSegments(t *testing.T, orig, restored FS) {
	t.Helper()
	for _, n := range files(t, restored) {
		if _, ok := segment.ParseFileName(n); ok && !bytes.Equal(readFile(t, orig, n), readFile(t, restored, n)) {
			t.Fatalf("restored %s differs from the original", n)
		}
	}
}

// storeKeys lists a store's keys by kind.
func storeKeys(t *testing.T, st replica.Store) (owners, snaps, segs []string) {
	t.Helper()
	objs, err := st.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		kind, _, _, _, ok := replica.ParseKey(o.Key)
		switch {
		case !ok:
			t.Fatalf("the store holds %q, which is not part of the layout", o.Key)
		case kind == "owner":
			owners = append(owners, o.Key)
		case kind == "snap":
			snaps = append(snaps, o.Key)
		default:
			segs = append(segs, o.Key)
		}
	}
	return owners, snaps, segs
}

// noOrphans checks that every segment in the store is listed by a commit
// object there, once the shipper's retention has run: it waits for that
// (a shipper deletes right after WaitReplicated returns).
func noOrphans(t *testing.T, st replica.Store) {
	t.Helper()
	for deadline := time.Now().Add(hangGuard); ; time.Sleep(5 * time.Millisecond) {
		orphans := orphansIn(t, st)
		if len(orphans) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store keeps segments no commit object lists: %v", orphans)
		}
	}
}

func orphansIn(t *testing.T, st replica.Store) (orphans []string) {
	t.Helper()
	_, snaps, segs := storeKeys(t, st)
	listed := map[string]bool{}
	for _, key := range snaps {
		rc, err := st.Get(context.Background(), key)
		if errors.Is(err, replica.ErrNotFound) {
			return []string{key + " (deleted while looking: retention is running)"}
		}
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		buf.ReadFrom(rc)
		rc.Close()
		c, _, err := replica.DecodeCommit(buf.Bytes(), key)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range c.Segments {
			listed[replica.SegmentKey(c.Lineage, s)] = true
		}
	}
	for _, key := range segs {
		if !listed[key] {
			orphans = append(orphans, key)
		}
	}
	return orphans
}

// A DB ships every snapshot; Restore gives each one back, bit for bit,
// and the restored directory opens like any other.
func TestShipAndRestore(t *testing.T) {
	m := vfs.NewMem()
	st := replicatest.NewMemStore()
	e := openRepl(t, m, st, Options{Retain: 5})
	defer e.Close()
	want := map[uint64]map[string]string{}
	for i := range 5 {
		s := commit(t, e, "counter", fmt.Sprint(i), fmt.Sprintf("s%d", i%3), strings.Repeat("x", i*1000))
		want[s.ID] = contents(t, e, s.ID)
		waitShipped(t, e, s.ID)
	}
	for id := uint64(1); id <= 5; id++ {
		r, rm, snap := restoreTo(t, st, RestoreOptions{ID: id})
		if snap.ID != id {
			t.Fatalf("restored snapshot %d, want %d", snap.ID, id)
		}
		if got := contents(t, r, 0); !maps.Equal(got, want[id]) {
			t.Fatalf("snapshot %d restored as %v, want %v", id, got, want[id])
		}
		sameSegments(t, m, rm)
		// Saving on, the restored DB is a DB like any other.
		commit(t, r, "counter", "restored")
		r.Close()
	}
	r, _, snap := restoreTo(t, st, RestoreOptions{})
	defer r.Close()
	if snap.ID != 5 || snap.States != len(want[5]) {
		t.Fatalf("newest restored: %+v", snap)
	}
	noOrphans(t, st)
}

// Commit objects are deltas, with a full one often enough; each restores.
func TestDeltasAndFulls(t *testing.T) {
	m := vfs.NewMem()
	st := replicatest.NewMemStore()
	e := openRepl(t, m, st, Options{Retain: 40})
	defer e.Close()
	var kv []string
	for i := range 20 {
		kv = append(kv, fmt.Sprintf("state%02d", i), strings.Repeat("v", 100))
	}
	commit(t, e, kv...)
	want := map[uint64]map[string]string{}
	for i := range 39 {
		s := commit(t, e, fmt.Sprintf("state%02d", i%20), fmt.Sprint(i))
		want[s.ID] = contents(t, e, s.ID)
		waitShipped(t, e, s.ID) // one commit object each
	}
	snaps, err := ReplicaSnapshots(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	run := 0
	fulls := 0
	for _, s := range snaps {
		if s.Problem != nil {
			t.Fatalf("snapshot %d: %v", s.ID, s.Problem)
		}
		if s.Full {
			fulls++
			run = 0
		} else if run++; run >= fullEvery {
			t.Fatalf("%d deltas in a row", run)
		}
	}
	if fulls < 2 || fulls > len(snaps)/2 {
		t.Fatalf("%d full commit objects of %d", fulls, len(snaps))
	}
	for _, id := range []uint64{2, 17, 18, 31, 40} {
		r, _, _ := restoreTo(t, st, RestoreOptions{ID: id})
		if got := contents(t, r, 0); !maps.Equal(got, want[id]) {
			t.Fatalf("snapshot %d restored as %v", id, got)
		}
		r.Close()
	}
}

// Only the newest committed snapshot is shipped: snapshots committed
// while the store is down are skipped, not shipped one by one.
func TestShipsTheNewest(t *testing.T) {
	m := vfs.NewMem()
	st := replicatest.NewFaultStore(replicatest.NewMemStore())
	e := openRepl(t, m, st, Options{Retain: 2})
	defer e.Close()
	commit(t, e, "a", "0")
	waitShipped(t, e, 1)
	st.SetDown(true)
	for i := range 10 {
		commit(t, e, "a", fmt.Sprint(i+1))
	}
	if s, _ := e.ReplicaStatus(); s.Shipped != 1 || s.Current != 11 || s.Pending != 2 || s.Behind == 0 || s.Lag <= 0 {
		t.Fatalf("status while down: %+v", s)
	}
	st.SetDown(false)
	waitShipped(t, e, 11)
	snaps, _ := ReplicaSnapshots(context.Background(), st)
	var ids []uint64
	for _, s := range snaps {
		ids = append(ids, s.ID)
	}
	if len(ids) > 3 || ids[len(ids)-1] != 11 {
		t.Fatalf("the store holds snapshots %v", ids)
	}
	if s, _ := e.ReplicaStatus(); s.Err != nil {
		t.Fatalf("the error stays after a success: %v", s.Err)
	}
}
