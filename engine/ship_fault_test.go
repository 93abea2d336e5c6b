package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/replica"
	"github.com/instadump/instadump/replica/replicatest"
	"github.com/instadump/instadump/segment"
)

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
			case errors.Is(err, errs.ErrNoSnapshot) && confirmed == 0:
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
			if err != nil && !(errors.Is(err, errs.ErrNoSnapshot) && confirmed == 0) {
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
