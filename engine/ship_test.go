package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/manifest"
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

// A reopened DB resumes where the store is: nothing it holds is uploaded
// again.
func TestResumeUploadsNothingTwice(t *testing.T) {
	m := vfs.NewMem()
	mem := replicatest.NewMemStore()
	st := replicatest.NewFaultStore(mem)
	e := openRepl(t, m, st, Options{})
	commit(t, e, "a", "1", "b", "2")
	commit(t, e, "a", "3")
	waitShipped(t, e, 2)
	e.Close()
	puts := st.Count(replicatest.OpUpload)

	e = openRepl(t, m, st, Options{})
	defer e.Close()
	waitShipped(t, e, 2)
	if n := st.Count(replicatest.OpUpload); n != puts {
		t.Fatalf("the reopened DB uploaded %d objects the store holds", n-puts)
	}
	commit(t, e, "b", "4")
	waitShipped(t, e, 3)
	// One segment and one commit object.
	if n := st.Count(replicatest.OpUpload) - puts; n != 2 {
		t.Fatalf("snapshot 3 took %d uploads, want 2", n)
	}
	if s, _ := e.ReplicaStatus(); s.Shipped != 3 || s.Current != 3 || s.Behind != 0 || s.Pending != 0 || s.Err != nil || s.Stopped != nil {
		t.Fatalf("status: %+v", s)
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

// The store keeps its own number of snapshots, and deletes everything
// else; older ones restore, and one it lacks is ErrNoSnapshot.
func TestStoreRetention(t *testing.T) {
	m := vfs.NewMem()
	st := replicatest.NewMemStore()
	e := openRepl(t, m, st, Options{Retain: 2, Replica: replOpts(st, 4)})
	defer e.Close()
	want := map[uint64]map[string]string{}
	for i := range 30 {
		s := commit(t, e, fmt.Sprint("s", i%4), fmt.Sprint(i))
		want[s.ID] = contents(t, e, s.ID)
		waitShipped(t, e, s.ID)
	}
	snaps, err := ReplicaSnapshots(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) < 4 || len(snaps) > 4+fullEvery || snaps[len(snaps)-1].ID != 30 {
		t.Fatalf("the store holds %d snapshots", len(snaps))
	}
	noOrphans(t, st)
	for _, s := range snaps {
		r, _, _ := restoreTo(t, st, RestoreOptions{ID: s.ID})
		if got := contents(t, r, 0); !maps.Equal(got, want[s.ID]) {
			t.Fatalf("snapshot %d restored as %v", s.ID, got)
		}
		r.Close()
	}
	_, err = Restore(context.Background(), st, "x", RestoreOptions{ID: 1, FS: vfs.NewMem()})
	if !errors.Is(err, ErrNoSnapshot) || !strings.Contains(err.Error(), "no snapshot 1") {
		t.Fatalf("restore of a deleted snapshot: %v", err)
	}
	// Before: the newest saved at or before a time.
	r, _, snap := restoreTo(t, st, RestoreOptions{Before: snaps[len(snaps)-2].Time})
	r.Close()
	if snap.ID != snaps[len(snaps)-2].ID {
		t.Fatalf("restore before %v gave snapshot %d", snaps[len(snaps)-2].Time, snap.ID)
	}
	_, err = Restore(context.Background(), st, "x", RestoreOptions{Before: snaps[0].Time.Add(-time.Nanosecond), FS: vfs.NewMem()})
	if !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("restore before every snapshot: %v", err)
	}
}

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
	if err := waitStopped(t, b); !errors.Is(err, ErrFenced) || !strings.Contains(err.Error(), "another DB") {
		t.Fatalf("the second DB: %v", err)
	}
	if s, _ := b.ReplicaStatus(); !errors.Is(s.Stopped, ErrFenced) || !errors.Is(s.Err, ErrFenced) {
		t.Fatalf("status: %+v", s)
	}
	commit(t, b, "who", "b2") // local saves go on
	b.Close()
	r, _, _ := restoreTo(t, st, RestoreOptions{})
	defer r.Close()
	if got := contents(t, r, 0)["who"]; got != "a" {
		t.Fatalf("restored %q: the second DB's snapshot got in", got)
	}
	// Reopened, it is fenced again (its lineage was kept).
	b = openRepl(t, bfs, st, Options{})
	defer b.Close()
	if err := waitStopped(t, b); !errors.Is(err, ErrFenced) {
		t.Fatalf("reopened: %v", err)
	}
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
	if err := waitStopped(t, a); !errors.Is(err, ErrFenced) || !strings.Contains(err.Error(), "took the location over") {
		t.Fatalf("the old owner: %v", err)
	}
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
	if err := waitStopped(t, c); !errors.Is(err, ErrFenced) {
		t.Fatalf("a second restore of the old owner: %v", err)
	}
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
	if err := waitStopped(t, b); !errors.Is(err, ErrFenced) || !strings.Contains(err.Error(), "copy of this DB's directory") {
		t.Fatalf("the copy: %v", err)
	}
	r, _, _ := restoreTo(t, st, RestoreOptions{})
	defer r.Close()
	if got := contents(t, r, 0)["who"]; got != "a2" {
		t.Fatalf("restored %q", got)
	}
	// Reopened, a copy that is behind the store is fenced at once.
	b.Close()
	b = openRepl(t, twin, st, Options{})
	defer b.Close()
	if err := waitStopped(t, b); !errors.Is(err, ErrFenced) {
		t.Fatalf("the copy reopened: %v", err)
	}
}

// Failures that may pass are retried until the snapshot is in the store;
// whatever the fault, the store restores what was confirmed.
func TestTransientFaults(t *testing.T) {
	for _, op := range []replicatest.Op{replicatest.OpPut, replicatest.OpCreate, replicatest.OpGet, replicatest.OpList, replicatest.OpDelete} {
		for _, mode := range []replicatest.Mode{replicatest.Before, replicatest.After, replicatest.MidBody} {
			for n := int64(1); n <= 4; n++ {
				t.Run(fmt.Sprintf("%s-%d-%d", op, mode, n), func(t *testing.T) {
					mem := replicatest.NewMemStore()
					st := replicatest.NewFaultStore(mem)
					st.Inject(replicatest.Fault{Ops: op, N: n, Err: replicatest.ErrTransient, Mode: mode, CutAt: 10})
					m := vfs.NewMem()
					e := openRepl(t, m, st, Options{Retain: 2, Replica: replOpts(st, 2)})
					defer e.Close()
					var want map[string]string
					for i := range 4 {
						s := commit(t, e, "a", strings.Repeat(fmt.Sprint(i), 100), fmt.Sprint("b", i%2), "x")
						want = contents(t, e, s.ID)
						waitShipped(t, e, s.ID)
					}
					r, _, _ := restoreTo(t, mem, RestoreOptions{})
					defer r.Close()
					if got := contents(t, r, 0); !maps.Equal(got, want) {
						t.Fatalf("restored %v, want %v", got, want)
					}
				})
			}
		}
	}
}

// Failures that will not pass stop shipping, with the error; saving
// goes on.
func TestPermanentFaults(t *testing.T) {
	for _, err := range []error{replicatest.ErrPermanent, fmt.Errorf("bad key: %w", replica.ErrInvalidKey)} {
		st := replicatest.NewFaultStore(replicatest.NewMemStore())
		st.Inject(replicatest.Fault{Ops: replicatest.OpPut, N: 1, All: true, Err: err})
		e := openRepl(t, vfs.NewMem(), st, Options{})
		commit(t, e, "a", "1")
		if got := waitStopped(t, e); !errors.Is(got, err) {
			t.Fatalf("stopped with %v, want %v", got, err)
		}
		commit(t, e, "a", "2")
		if s, _ := e.ReplicaStatus(); s.Stopped == nil || s.Current != 2 {
			t.Fatalf("status: %+v", s)
		}
		e.Close()
	}
}

// The process dies at every step of shipping (every store operation from
// the k-th on fails, as if it never happened or its answer never came);
// the store then always restores a complete snapshot no older than the
// last one confirmed, and a reopened DB finishes the job.
func TestCrashAtEveryStep(t *testing.T) {
	const saves = 6
	steps := 0
	for _, mode := range []replicatest.Mode{replicatest.Before, replicatest.After, replicatest.MidBody} {
		for k := int64(1); ; k++ {
			mem := replicatest.NewMemStore()
			st := replicatest.NewFaultStore(mem)
			st.Inject(replicatest.Fault{Ops: replicatest.OpAll, N: k, All: true, Err: replicatest.ErrPermanent, Mode: mode, CutAt: 7})
			m := vfs.NewMem()
			e := openRepl(t, m, st, Options{Retain: 3, Replica: replOpts(st, 2)})
			want := map[uint64]map[string]string{}
			var confirmed uint64
			for i := range saves {
				s := commit(t, e, fmt.Sprint("s", i%3), strings.Repeat(fmt.Sprint(i), 50+i))
				want[s.ID] = contents(t, e, s.ID)
				ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
				if err := e.WaitReplicated(ctx, s.ID); err == nil {
					confirmed = s.ID
				}
				cancel()
			}
			e.Close()
			injected := st.Injected(replicatest.OpAll)
			steps++
			// The store as the dead process left it.
			snap, err := Restore(context.Background(), mem, "r", RestoreOptions{FS: vfs.NewMem()})
			switch {
			case errors.Is(err, ErrNoSnapshot) && confirmed == 0:
			case err != nil:
				t.Fatalf("mode %d, step %d: restore: %v", mode, k, err)
			case snap.ID < confirmed:
				t.Fatalf("mode %d, step %d: restored snapshot %d, but %d was confirmed", mode, k, snap.ID, confirmed)
			}
			if err == nil {
				r, _, _ := restoreTo(t, mem, RestoreOptions{})
				if got := contents(t, r, 0); !maps.Equal(got, want[snap.ID]) {
					t.Fatalf("mode %d, step %d: snapshot %d restored as %v, want %v", mode, k, snap.ID, got, want[snap.ID])
				}
				r.Close()
			}
			// Every snapshot the store lists is complete, and restores
			// right.
			snaps, err := ReplicaSnapshots(context.Background(), mem)
			if err != nil && !(errors.Is(err, ErrNoSnapshot) && confirmed == 0) {
				t.Fatal(err)
			}
			for _, s := range snaps {
				if s.Problem != nil {
					t.Fatalf("mode %d, step %d: the store lists snapshot %d, which cannot be restored: %v", mode, k, s.ID, s.Problem)
				}
				r, _, _ := restoreTo(t, mem, RestoreOptions{ID: s.ID})
				if got := contents(t, r, 0); !maps.Equal(got, want[s.ID]) {
					t.Fatalf("mode %d, step %d: snapshot %d restored as %v", mode, k, s.ID, got)
				}
				r.Close()
			}
			// The process starts again: it ships the rest.
			counted := replicatest.NewFaultStore(mem)
			e = openRepl(t, m, counted, Options{Retain: 3, Replica: replOpts(counted, 2)})
			waitShipped(t, e, saves)
			noOrphans(t, mem)
			e.Close()
			r, _, _ := restoreTo(t, mem, RestoreOptions{})
			if got := contents(t, r, 0); !maps.Equal(got, want[saves]) {
				t.Fatalf("mode %d, step %d: after restart restored %v", mode, k, got)
			}
			r.Close()
			if injected == 0 {
				break // the whole run passed before step k
			}
		}
	}
	t.Logf("%d crash steps checked", steps)
}

// Close stops a shipper stuck on a slow store at once, and leaks no
// goroutine; with a grace period it lets the current snapshot finish.
func TestCloseStopsShipping(t *testing.T) {
	before := runtime.NumGoroutine()
	st := replicatest.NewFaultStore(replicatest.NewMemStore())
	st.SetLatency(time.Hour)
	e := openRepl(t, vfs.NewMem(), st, Options{})
	commit(t, e, "a", "1")
	e.Close()
	if err := e.WaitReplicated(context.Background(), 1); !errors.Is(err, errs.ErrClosed) {
		t.Fatalf("WaitReplicated after Close: %v", err)
	}
	for i := 0; runtime.NumGoroutine() > before; i++ {
		if i == 1000 {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines left: %d, before %d\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}

	mem := replicatest.NewMemStore()
	slow := replicatest.NewFaultStore(mem)
	slow.SetLatency(20 * time.Millisecond)
	o := replOpts(slow, 0)
	o.Grace = hangGuard
	e = openRepl(t, vfs.NewMem(), slow, Options{Replica: o})
	commit(t, e, "a", "1")
	commit(t, e, "a", "2")
	e.Close()
	snaps, err := ReplicaSnapshots(context.Background(), mem)
	if err != nil || len(snaps) == 0 || snaps[len(snaps)-1].ID != 2 {
		t.Fatalf("after Close with a grace period the store holds %+v (%v)", snaps, err)
	}
}

// A slow upload reads a segment that garbage collection deleted
// meanwhile: the shipper holds it open.
func TestUploadOutlivesCollection(t *testing.T) {
	mem := replicatest.NewMemStore()
	st := replicatest.NewFaultStore(mem)
	m := vfs.NewMem()
	e := openRepl(t, m, st, Options{Retain: 1})
	defer e.Close()
	commit(t, e, "a", strings.Repeat("1", 1000))
	waitShipped(t, e, 1)
	st.SetLatency(50 * time.Millisecond)
	for i := range 5 {
		commit(t, e, "a", strings.Repeat(fmt.Sprint(i), 1000))
	}
	want := contents(t, e, 0)
	if slices.Contains(files(t, m), segment.FileName(2)) {
		t.Fatal("segment 2 was not collected")
	}
	waitShipped(t, e, 6)
	st.SetLatency(0)
	r, _, _ := restoreTo(t, mem, RestoreOptions{})
	defer r.Close()
	if got := contents(t, r, 0); !maps.Equal(got, want) {
		t.Fatalf("restored %v", got)
	}
}

// A DB that fell back to an older snapshot than it shipped replicates on
// as a new lineage that takes over from its old one.
func TestFallbackStartsALineage(t *testing.T) {
	st := replicatest.NewMemStore()
	m := vfs.NewMem()
	e := openRepl(t, m, st, Options{Retain: 3})
	commit(t, e, "a", "1")
	commit(t, e, "a", "2")
	waitShipped(t, e, 2)
	old, _, _ := readLineage(m, dir)
	e.Close()
	rewrite(t, m, segment.FileName(2), flipAt(segment.HeaderSize+segment.ChunkHeaderSize))
	e = openRepl(t, m, st, Options{Retain: 3, Fallback: true})
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
	r, _, _ := restoreTo(t, st, RestoreOptions{})
	defer r.Close()
	if got := contents(t, r, 0)["a"]; got != "2'" {
		t.Fatalf("restored %q", got)
	}
}

func TestLineageFile(t *testing.T) {
	m := vfs.NewMem()
	m.MkdirAll(dir)
	for _, l := range []Lineage{{ID: replica.Lineage{1, 2}}, {ID: replica.Lineage{3}, Parent: replica.Lineage{4}, Fork: 17}} {
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

// What a commit object records is what the engine's records say: a
// restored directory's manifest holds the snapshot in one full record.
func TestRestoredManifest(t *testing.T) {
	st := replicatest.NewMemStore()
	e := openRepl(t, vfs.NewMem(), st, Options{})
	defer e.Close()
	commit(t, e, "a", "1", "b", "2")
	s := commit(t, e, "a", "3")
	waitShipped(t, e, s.ID)
	m := vfs.NewMem()
	if _, err := Restore(context.Background(), st, dir, RestoreOptions{FS: m}); err != nil {
		t.Fatal(err)
	}
	names := files(t, m)
	if !slices.Equal(names, []string{segment.FileName(1), segment.FileName(2), CurrentFile, LineageFile, manifest.FileName(1)}) {
		t.Fatalf("restored directory: %v", names)
	}
	log, err := manifest.ReplayBytes(readFile(t, m, manifest.FileName(1)), "m")
	if err != nil || len(log.Records) != 1 || log.Records[0].Kind != manifest.Full || log.Records[0].Retained != 2 || log.Records[0].NextSegment != 3 {
		t.Fatalf("restored manifest: %+v %v", log, err)
	}
	r, err := Open(dir, Options{FS: m, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, want := contents(t, r, 0), contents(t, e, 0); !maps.Equal(got, want) {
		t.Fatalf("restored %v, want %v", got, want)
	}
}

// countingStore counts the uploads of each key.
type countingStore struct {
	replica.Store
	mu      sync.Mutex
	uploads map[string]int
}

func (c *countingStore) count(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.uploads[key]++
}

func (c *countingStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	c.count(key)
	return c.Store.Put(ctx, key, r, size)
}

func (c *countingStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	c.count(key)
	return c.Store.Create(ctx, key, r, size)
}

// An upload whose answer is lost is found in the store by the next round,
// not uploaded again, even when newer snapshots came meanwhile; every
// snapshot in the store stays complete.
func TestLostAnswers(t *testing.T) {
	for _, op := range []replicatest.Op{replicatest.OpPut, replicatest.OpCreate} {
		for n := int64(1); n <= 3; n++ {
			mem := replicatest.NewMemStore()
			cs := &countingStore{Store: mem, uploads: map[string]int{}}
			st := replicatest.NewFaultStore(cs)
			st.Inject(replicatest.Fault{Ops: op, N: n, Err: replicatest.ErrTransient, Mode: replicatest.After})
			o := replOpts(st, 10)
			o.RetryMin, o.RetryMax = 20*time.Millisecond, 40*time.Millisecond
			e := openRepl(t, vfs.NewMem(), st, Options{Retain: 10, Replica: o})
			var last Snapshot
			for i := range 6 {
				last = commit(t, e, fmt.Sprint("s", i%2), strings.Repeat(fmt.Sprint(i), 100))
			}
			waitShipped(t, e, last.ID)
			noOrphans(t, mem)
			e.Close()
			for key, times := range cs.uploads {
				if times > 1 {
					t.Errorf("%s, fault %d: %s was uploaded %d times", op, n, key, times)
				}
			}
			snaps, err := ReplicaSnapshots(context.Background(), mem)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range snaps {
				if s.Problem != nil {
					t.Fatalf("%s, fault %d: snapshot %d: %v", op, n, s.ID, s.Problem)
				}
			}
		}
	}
}
