package engine

// Races and late arrivals around the Create of a commit object.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/replica"
	"github.com/instadump/instadump/replica/replicatest"
	"github.com/instadump/instadump/segment"
)

// ctlStore: while failing, every Create of a commit object fails as a
// timeout without landing (the first body is stashed, to be landed by the
// test). getHook, if set, runs before every Get.
type ctlStore struct {
	replica.Store
	failing atomic.Bool
	mu      sync.Mutex
	key     string
	body    []byte
	getHook func(key string)
}

func (c *ctlStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	if strings.Contains(key, "/snap/") && c.failing.Load() {
		b, _ := io.ReadAll(r)
		c.mu.Lock()
		if c.key == "" {
			c.key, c.body = key, b
		}
		c.mu.Unlock()
		return fmt.Errorf("request timed out: %w", replica.ErrUnavailable)
	}
	return c.Store.Create(ctx, key, r, size)
}

func (c *ctlStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	c.mu.Lock()
	h := c.getHook
	c.mu.Unlock()
	if h != nil {
		h(key)
	}
	return c.Store.Get(ctx, key)
}

// land makes the stashed Create take effect in st.
func (c *ctlStore) land(t *testing.T, st replica.Store) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := st.Create(context.Background(), c.key, bytes.NewReader(c.body), int64(len(c.body))); err != nil {
		t.Fatal(err)
	}
}

// A Create of this directory's that lands late is taken in only after a
// List after it: a copy that shipped another snapshot meanwhile, alone
// as far as it could tell, goes on; this one is fenced, and deletes its
// late commit object again.
func TestLateCreateIsConfirmed(t *testing.T) {
	mem := replicatest.NewMemStore()
	ctl := &ctlStore{Store: mem}
	m := vfs.NewMem()
	a := openRepl(t, m, ctl, Options{})
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

	var key5 string
	var gets atomic.Int32
	atHook := make(chan struct{})
	release := make(chan struct{})
	ctl.mu.Lock()
	ctl.getHook = func(key string) {
		if key5 != "" && key == key5 && gets.Add(1) == 2 { // 1: recheck (absent), 2: findLate
			close(atHook)
			<-release
		}
	}
	ctl.mu.Unlock()
	al, _, _ := readLineage(m, dir)
	key5 = replica.CommitKey(al.ID, 5)
	ctl.failing.Store(true)
	commit(t, a, "x", "a5")
	<-atHook
	ctl.failing.Store(false)

	// Meanwhile the copy ships its 6, alone as far as it can tell.
	b = openRepl(t, twin, mem, Options{})
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bErr := b.WaitReplicated(ctx, 6)
	// Then a's first Create of 5 lands, and a reads it back.
	ctl.land(t, mem)
	close(release)
	if err := waitStopped(t, a); !errors.Is(err, ErrFenced) || bErr != nil {
		t.Fatalf("a: %v; b: %v; want a fenced, b's 6 replicated", err, bErr)
	}
	snaps, err := ReplicaSnapshots(context.Background(), mem)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range snaps {
		if s.ID == 5 {
			t.Fatalf("a's late snapshot 5 stayed in the store: %+v", snaps)
		}
	}
	if got := restored(t, mem, RestoreOptions{})["x"]; got != "b6" {
		t.Fatalf("restored x=%q", got)
	}
}

// A Create that timed out, read back as absent and given up for a newer
// snapshot lands after a restart: the commit object is of a snapshot
// the directory retains, the same: its own, not a copy's.
func TestLateOlderCreateAfterRestart(t *testing.T) {
	mem := replicatest.NewMemStore()
	ctl := &ctlStore{Store: mem}
	m := vfs.NewMem()
	ro := retrying(ctl, 0, 300*time.Millisecond)
	a := open(t, m, Options{Replica: ro})
	for i := 1; i <= 4; i++ {
		commit(t, a, "x", fmt.Sprint(i))
	}
	waitShipped(t, a, 4)
	ctl.failing.Store(true)
	commit(t, a, "x", "5") // its Create times out; the PUT is still on its way
	waitShipFails(t, a, "the Create did not fail")
	ctl.failing.Store(false)
	commit(t, a, "x", "6")
	waitShipped(t, a, 6) // the next round ships 6 (5 read back as absent: tried)
	a.Close()

	a = openRepl(t, m, mem, Options{})
	defer a.Close()
	waitShipped(t, a, 6) // resumed
	ctl.land(t, mem)     // the first PUT of 5 completes on the server
	s := commit(t, a, "x", "7")
	waitShipped(t, a, s.ID)
}

// A copy of the directory that only opens runs retention and deletes
// the segments the original uploaded for a snapshot whose Create failed
// and is retried: the original uploads them again before it reports the
// snapshot replicated.
func TestIdleCopyDeletesUploadedSegments(t *testing.T) {
	mem := replicatest.NewMemStore()
	ctl := &ctlStore{Store: mem}
	m := vfs.NewMem()
	ro := retrying(ctl, 0, 300*time.Millisecond)
	a := open(t, m, Options{Replica: ro})
	defer a.Close()
	for i := 1; i <= 4; i++ {
		commit(t, a, "x", fmt.Sprint(i))
	}
	waitShipped(t, a, 4)
	twin := m.CrashClone(vfs.CrashOptions{}) // the copy, at snapshot 4
	ctl.failing.Store(true)
	commit(t, a, "x", "5") // segment 5 uploaded, Create fails: retries in 300ms
	waitShipFails(t, a, "the Create did not fail")
	// The copy opens with the same replica options, and does nothing.
	b := openRepl(t, twin, mem, Options{})
	for deadline := time.Now().Add(5 * time.Second); len(orphansIn(t, mem)) > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	b.Close()
	ctl.failing.Store(false)
	ctl.mu.Lock()
	ctl.key = "" // the failed Create never lands
	ctl.mu.Unlock()
	waitShipped(t, a, 5)
	if _, err := Restore(context.Background(), mem, "r", RestoreOptions{ID: 5, FS: vfs.NewMem()}); err != nil {
		t.Errorf("WaitReplicated(5) returned nil, but: %v", err)
	}
}

// After a restart the commit object of a snapshot is made again, full
// (another checksum than the first attempt's delta LINEAGE noted); when
// its Create times out too and the first one then lands, that one is the
// directory's own: the snapshot it retains, the same.
func TestLateFirstCreateAfterRestart(t *testing.T) {
	mem := replicatest.NewMemStore()
	ctl := &ctlStore{Store: mem}
	m := vfs.NewMem()
	ro := retrying(ctl, 0, time.Hour)
	a := open(t, m, Options{Replica: ro})
	for i := 1; i <= 4; i++ {
		commit(t, a, "x", fmt.Sprint(i))
	}
	waitShipped(t, a, 4)
	ctl.failing.Store(true)
	commit(t, a, "x", "5") // PUT X (a delta on 4) times out; still on its way
	waitShipFails(t, a, "the Create did not fail")
	m2 := m.CrashClone(vfs.CrashOptions{}) // the process dies
	a.Close()
	l, _, _ := readLineage(m2, dir)
	key5 := replica.CommitKey(l.ID, 5)
	var gets atomic.Int32
	ctl.mu.Lock()
	ctl.getHook = func(key string) {
		if key == key5 {
			gets.Add(1)
		}
	}
	ctl.mu.Unlock()
	ro.RetryMin, ro.RetryMax = 50*time.Millisecond, 50*time.Millisecond
	a = open(t, m2, Options{Replica: ro}) // the store still times out
	defer a.Close()
	eventually(t, "no retries", func() bool { return !(gets.Load() < 4) })
	ctl.land(t, mem) // the first PUT completes on the server
	ctl.failing.Store(false)
	waitShipped(t, a, 5)
}

// A DB whose Via lineage was taken over by a restore is fenced after a
// fallback below its fork; the restored DB keeps the location.
func TestViaTakenOverByRestore(t *testing.T) {
	st := replicatest.NewMemStore()
	m := vfs.NewMem()
	o := Options{Retain: 5, Replica: replOpts(st, 5)}
	e := openRepl(t, m, st, o)
	for i := 1; i <= 4; i++ {
		waitShipped(t, e, commit(t, e, "a", fmt.Sprint(i)).ID)
	}
	e.Close()
	fo := o
	fo.Fallback = true
	rewrite(t, m, segment.FileName(4), flipAt(segment.HeaderSize+segment.ChunkHeaderSize))
	e = openRepl(t, m, st, fo) // L2 from 3
	waitShipped(t, e, commit(t, e, "b", "x").ID)
	e.Close()
	// Restore from the location (owner L2) and take over.
	rfs := vfs.NewMem()
	if _, err := Restore(context.Background(), st, dir, RestoreOptions{FS: rfs}); err != nil {
		t.Fatal(err)
	}
	r := openRepl(t, rfs, st, o)
	defer r.Close()
	waitShipped(t, r, commit(t, r, "r", "1").ID)
	// The DB falls back below L2's fork: Via [L2], but R owns.
	rewrite(t, m, segment.FileName(3), flipAt(segment.HeaderSize+segment.ChunkHeaderSize))
	e = openRepl(t, m, st, fo)
	defer e.Close()
	commit(t, e, "a", "3''")
	wantFenced(t, e, "the fallback whose Via lineage was taken over", "")
	waitShipped(t, r, commit(t, r, "r", "2").ID)
}

// An owner taken over by a restored DB between its owner check and its
// Create does not report its snapshot replicated: the List of owner
// records after the Create fences it.
func TestTakenOverMidShip(t *testing.T) {
	mem := replicatest.NewMemStore()
	g := newGateStore(mem)
	a := openRepl(t, vfs.NewMem(), g, Options{})
	defer a.Close()
	for i := 1; i <= 3; i++ {
		waitShipped(t, a, commit(t, a, "x", fmt.Sprint("a", i)).ID)
	}
	g.armed.Store(true)
	commit(t, a, "x", "a4")
	<-g.atGate
	rfs := vfs.NewMem()
	if _, err := Restore(context.Background(), mem, dir, RestoreOptions{FS: rfs}); err != nil {
		t.Fatal(err)
	}
	r := openRepl(t, rfs, mem, Options{})
	defer r.Close()
	waitShipped(t, r, commit(t, r, "x", "r4").ID)
	g.armed.Store(false)
	close(g.release)
	wantFenced(t, a, "the old owner's snapshot 4, created after the takeover", "")
	if got := restored(t, mem, RestoreOptions{ID: 4})["x"]; got != "r4" {
		t.Fatalf("the timeline's 4 holds x=%q", got)
	}
}

// laggyList keeps listing a deleted key for its next 2 Lists (a listing
// that lags deletes: a mounted bucket, an NFS directory cache), while
// Get says ErrNotFound, as readLineageObjs expects ("deleted since the
// listing").
type laggyList struct {
	replica.Store
	mu   sync.Mutex
	gone map[string]int
	size map[string]int64
}

func (l *laggyList) Delete(ctx context.Context, key string) error {
	objs, _ := l.Store.List(ctx, key)
	l.mu.Lock()
	for _, o := range objs {
		if o.Key == key {
			l.gone[key], l.size[key] = 2, o.Size
		}
	}
	l.mu.Unlock()
	return l.Store.Delete(ctx, key)
}

func (l *laggyList) List(ctx context.Context, prefix string) ([]replica.Object, error) {
	objs, err := l.Store.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, n := range l.gone {
		if strings.HasPrefix(k, prefix) {
			objs = append(objs, replica.Object{Key: k, Size: l.size[k]})
			if n--; n == 0 {
				delete(l.gone, k)
			} else {
				l.gone[k] = n
			}
		}
	}
	slices.SortFunc(objs, func(a, b replica.Object) int { return strings.Compare(a.Key, b.Key) })
	return objs, nil
}

// A copy fenced after its Create does not delete a commit object that
// another process's follows: with the same snapshot in both copies, the
// object under its key may be the other's, the base of the other's next
// delta.
func TestFencedCopyKeepsWhatOthersFollow(t *testing.T) {
	mem := replicatest.NewMemStore()
	m := vfs.NewMem()
	a := openRepl(t, m, mem, Options{})
	var filler []string
	for i := range 20 {
		filler = append(filler, fmt.Sprint("k", i), "v")
	}
	commit(t, a, filler...)
	for i := 2; i <= 4; i++ {
		commit(t, a, "x", fmt.Sprint("a", i))
	}
	waitShipped(t, a, 4)
	a.Close()
	a = open(t, m, Options{}) // snapshot 5 saved, not shipped yet
	commit(t, a, "x", "a5")
	a.Close()
	twin := m.CrashClone(vfs.CrashOptions{}) // both hold the same snapshot 5

	g := newGateStore(mem)
	g.armed.Store(true)
	b := openRepl(t, twin, g, Options{})
	defer b.Close()
	<-g.atGate // b listed (nothing after 4) and is about to create 5

	a = openRepl(t, m, mem, Options{})
	defer a.Close()
	waitShipped(t, a, 5)
	waitShipped(t, a, commit(t, a, "x", "a6").ID) // a delta on a's 5
	g.armed.Store(false)
	close(g.release)
	wantFenced(t, b, "the copy", "")
	if snap, err := Restore(context.Background(), mem, "r", RestoreOptions{FS: vfs.NewMem()}); err != nil || snap.ID != 6 {
		t.Fatalf("a's WaitReplicated(6) returned nil, but Restore of the newest gives snapshot %d, %v", snap.ID, err)
	}
	if _, err := Restore(context.Background(), mem, "r", RestoreOptions{ID: 6, FS: vfs.NewMem()}); err != nil {
		t.Fatalf("Restore(ID 6): %v", err)
	}
	s7 := commit(t, a, "x", "a7")
	waitShipped(t, a, s7.ID)
	if snap, err := Restore(context.Background(), mem, "r", RestoreOptions{FS: vfs.NewMem()}); err != nil || snap.ID != 7 {
		t.Errorf("a's WaitReplicated(7) returned nil, but Restore of the newest gives snapshot %d, %v", snap.ID, err)
	}
}

// A copy that only opens deletes, by its retention, the segment the
// original uploaded for a snapshot it is about to commit: the List after
// the Create finds it gone, and the next round uploads it again.
func TestSegmentGoneBeforeCreate(t *testing.T) {
	mem := replicatest.NewMemStore()
	g := newGateStore(mem)
	fs := replicatest.NewFaultStore(g)
	m := vfs.NewMem()
	a := openRepl(t, m, fs, Options{})
	defer a.Close()
	for i := 1; i <= 4; i++ {
		commit(t, a, "x", fmt.Sprint(i))
	}
	waitShipped(t, a, 4)
	twin := m.CrashClone(vfs.CrashOptions{}) // a copy at snapshot 4
	g.armed.Store(true)
	commit(t, a, "x", "5")
	<-g.atGate // a uploaded segment 5, listed, and is about to create 5
	// The copy opens, idle: its retention deletes segment 5, which no
	// commit object lists yet.
	b := openRepl(t, twin, mem, Options{})
	for deadline := time.Now().Add(5 * time.Second); len(orphansIn(t, mem)) > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	b.Close()
	g.armed.Store(false)
	close(g.release)
	waitShipped(t, a, 5)
	if _, err := Restore(context.Background(), mem, "r", RestoreOptions{ID: 5, FS: vfs.NewMem()}); err != nil {
		t.Fatal(err)
	}
}

// A shipper that sees a copy's commit object after its own Create but
// does not delete its own (the Delete fails, or it dies between the
// Create and the List after it) is fenced again at its next open: the
// copy's snapshot, newer than the last it noted as in the store, is not
// one of its own. Every commit object after that note is checked, not
// only the newest.
func TestCopyAfterOwnCreateAtNextOpen(t *testing.T) {
	for _, dies := range []bool{false, true} {
		t.Run(fmt.Sprint("dies=", dies), func(t *testing.T) {
			mem := replicatest.NewMemStore()
			m, twin := shippedAndCopied(t, mem)
			b := open(t, twin, Options{})
			commit(t, b, "x", "b5")
			b.Close()
			a := open(t, m, Options{})
			commit(t, a, "x", "a5")
			commit(t, a, "x", "a6")
			a.Close()

			g := newGateStore(mem)
			fa := replicatest.NewFaultStore(g)
			g.armed.Store(true)
			a = openRepl(t, m, fa, Options{})
			<-g.atGate // a listed (nothing after 4) and is about to create 6
			b = openRepl(t, twin, mem, Options{})
			defer b.Close()
			waitShipped(t, b, 5) // b created 5 and listed after: alone; replicated
			if dies {
				// a's Create goes through; everything after it fails.
				fa.Inject(replicatest.Fault{Ops: replicatest.OpList | replicatest.OpGet | replicatest.OpDelete, N: 1, All: true, Err: replicatest.ErrTransient})
			} else {
				fa.Inject(replicatest.Fault{Ops: replicatest.OpDelete, N: 1, All: true, Err: replicatest.ErrTransient})
			}
			g.armed.Store(false)
			close(g.release)
			if dies {
				waitShipFails(t, a, "a's List after its Create did not fail")
				m = m.CrashClone(vfs.CrashOptions{})
			} else {
				wantFenced(t, a, "a, which sees b's 5 after its Create", "")
			}
			a.Close()

			a = openRepl(t, m, mem, Options{})
			defer a.Close()
			commit(t, a, "x", "a7")
			wantFenced(t, a, "a reopened beside b's 5, which it did not make", "")
		})
	}
}

// A single DB on a store whose listing lags its deletes is not fenced
// by a commit object its own retention just deleted, and every snapshot
// WaitReplicated reports restores, with a small Retain.
func TestListLaggingDeletes(t *testing.T) {
	for _, retain := range []int{1, 2} {
		st := &laggyList{Store: replicatest.NewMemStore(), gone: map[string]int{}, size: map[string]int64{}}
		a := openRepl(t, vfs.NewMem(), st, Options{Retain: retain, Replica: replOpts(st, retain)})
		for i := 1; i <= 30; i++ {
			s := commit(t, a, fmt.Sprint("k", i%4), fmt.Sprint(i), "big", fmt.Sprint(i%7))
			waitShipped(t, a, s.ID)
			if _, err := Restore(context.Background(), st.Store, "r", RestoreOptions{ID: s.ID, FS: vfs.NewMem()}); err != nil {
				t.Fatalf("retain %d: snapshot %d: %v", retain, s.ID, err)
			}
		}
		a.Close()
	}
}

// afterCreateStore fails, once armed, the first List after a Create of a
// commit object: confirm's check fails transiently. Before failing, it
// runs hook (the test commits a newer snapshot there).
type afterCreateStore struct {
	replica.Store
	armed   atomic.Bool
	created atomic.Bool
	fails   atomic.Int32
	mu      sync.Mutex
	hook    func()
}

func (s *afterCreateStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	err := s.Store.Create(ctx, key, r, size)
	if strings.Contains(key, "/snap/") && s.armed.Load() {
		s.created.Store(true)
	}
	return err
}

func (s *afterCreateStore) List(ctx context.Context, prefix string) ([]replica.Object, error) {
	if s.created.Load() && s.armed.Load() {
		if s.fails.Add(1) == 2 {
			s.armed.Store(false)
			s.mu.Lock()
			h := s.hook
			s.mu.Unlock()
			if h != nil {
				h()
			}
		}
		return nil, fmt.Errorf("injected 503: %w", replica.ErrUnavailable)
	}
	return s.Store.List(ctx, prefix)
}

// A single DB whose List after its Create of snapshot 2 fails, while
// snapshot 3 is committed and shipped: it reopens unfenced (2, taken in
// as its own, is noted).
func TestListFailsAfterCreate(t *testing.T) {
	mem := replicatest.NewMemStore()
	st := &afterCreateStore{Store: mem}
	m := vfs.NewMem()
	o := Options{Retain: 1, Replica: replOpts(st, 3)}
	a := open(t, m, o)
	waitShipped(t, a, commit(t, a, "x", "1").ID)
	st.mu.Lock()
	st.hook = func() { commit(t, a, "x", "3") }
	st.mu.Unlock()
	st.armed.Store(true)
	commit(t, a, "x", "2")
	waitShipped(t, a, 3)
	a.Close()

	a = open(t, m, o)
	defer a.Close()
	s := commit(t, a, "x", "4")
	waitShipped(t, a, s.ID)
}

// The same with a larger local Retain: the reopen right after is fine
// (snapshot 2 is retained), and so is one after the store was down over
// a few commits (2 is not retained any more, but noted).
func TestListFailsAfterCreateRetained(t *testing.T) {
	mem := replicatest.NewMemStore()
	st := &afterCreateStore{Store: mem}
	fs := replicatest.NewFaultStore(st)
	m := vfs.NewMem()
	o := Options{Retain: 3, Replica: replOpts(fs, 3)}
	a := open(t, m, o)
	waitShipped(t, a, commit(t, a, "x", "1").ID)
	st.mu.Lock()
	st.hook = func() { commit(t, a, "x", "3") }
	st.mu.Unlock()
	st.armed.Store(true)
	commit(t, a, "x", "2")
	waitShipped(t, a, 3)
	a.Close()

	a = open(t, m, o) // retains 1..3: resumes
	waitShipped(t, a, 3)
	fs.SetDown(true)
	for i := 4; i <= 6; i++ {
		commit(t, a, "x", fmt.Sprint(i))
	}
	a.Close()
	fs.SetDown(false)

	a = open(t, m, o)
	defer a.Close()
	waitShipped(t, a, 6)
}

// A Create that timed out lands late, after retention deleted the
// segments uploaded for it: it is deleted again, never listed as a
// snapshot the store cannot restore.
func TestLateCreateAfterItsSegmentsWereDeleted(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprint("restart=", restart), func(t *testing.T) {
			mem := replicatest.NewMemStore()
			ctl := &ctlStore{Store: mem}
			m := vfs.NewMem()
			ro := retrying(ctl, 4, 300*time.Millisecond)
			o := Options{Retain: 1, Replica: ro}
			if restart {
				o.Retain = 3 // 2 is retained at the next open: taken in there
			}
			a := open(t, m, o)
			defer func() { a.Close() }()
			waitShipped(t, a, commit(t, a, "x", "1").ID)
			ctl.failing.Store(true)
			commit(t, a, "x", "2") // its Create times out; the PUT is still on its way
			waitShipFails(t, a, "the Create did not fail")
			ctl.failing.Store(false)
			commit(t, a, "x", "3")
			waitShipped(t, a, 3) // 2 read back as absent: tried; its segment unused: deleted
			ctl.land(t, mem)     // the first PUT of 2 completes on the server
			if restart {
				a.Close()
				a = open(t, m, o)
			}
			waitShipped(t, a, commit(t, a, "x", "4").ID)
			waitShipped(t, a, commit(t, a, "y", "5").ID) // a round of retention after 2 was taken in
			snaps, err := ReplicaSnapshots(context.Background(), mem)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range snaps {
				if s.Problem != nil || s.ID == 2 {
					t.Errorf("the store lists snapshot %d, which cannot be restored: %v", s.ID, s.Problem)
				}
			}
		})
	}
}

// stashStore: while failing, every Create of a commit object times out
// without landing; the body of each is stashed by key, to be landed by
// the test. failListsFrom: every List from the n-th on fails (0: none).
type stashStore struct {
	replica.Store
	failing   atomic.Bool
	mu        sync.Mutex
	bodies    map[string][]byte
	lists     atomic.Int64
	failLists atomic.Int64
}

func (c *stashStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	if strings.Contains(key, "/snap/") && c.failing.Load() {
		b, _ := io.ReadAll(r)
		c.mu.Lock()
		if c.bodies == nil {
			c.bodies = map[string][]byte{}
		}
		if _, ok := c.bodies[key]; !ok {
			c.bodies[key] = b
		}
		c.mu.Unlock()
		return fmt.Errorf("request timed out: %w", replica.ErrUnavailable)
	}
	return c.Store.Create(ctx, key, r, size)
}

func (c *stashStore) List(ctx context.Context, prefix string) ([]replica.Object, error) {
	n := c.lists.Add(1)
	if f := c.failLists.Load(); f > 0 && n >= f {
		return nil, fmt.Errorf("injected 503: %w", replica.ErrUnavailable)
	}
	return c.Store.List(ctx, prefix)
}

func (c *stashStore) stashed(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.bodies[key]
	return ok
}

func (c *stashStore) land(t *testing.T, st replica.Store, key string) {
	t.Helper()
	c.mu.Lock()
	b := c.bodies[key]
	c.mu.Unlock()
	if b == nil {
		t.Fatalf("nothing stashed under %s", key)
	}
	if err := st.Create(context.Background(), key, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

// A retained commit object that start takes in and notes does not
// lower LINEAGE's note below a Create still in flight: when that Create
// lands and the DB falls back below it, the DB starts a new lineage, not
// fenced by its own snapshot.
func TestStartNoteKeepsAnUnlandedCreate(t *testing.T) {
	mem := replicatest.NewMemStore()
	st := &stashStore{Store: mem}
	m := vfs.NewMem()
	ro := retrying(st, 0, 50*time.Millisecond)
	o := Options{Retain: 3, Replica: ro}
	a := open(t, m, o)
	for i := 1; i <= 4; i++ {
		commit(t, a, "x", fmt.Sprint(i), fmt.Sprint("k", i), "v")
	}
	waitShipped(t, a, 4)
	lin, _, _ := readLineage(m, dir)
	key5, key6 := replica.CommitKey(lin.ID, 5), replica.CommitKey(lin.ID, 6)
	st.failing.Store(true)
	commit(t, a, "x", "5") // its Create times out; the PUT is on its way
	eventually(t, "no Create of 5", func() bool { return st.stashed(key5) })
	commit(t, a, "x", "6") // the next rounds: 5 read back absent; 6's Create times out too
	eventually(t, "no Create of 6", func() bool { return st.stashed(key6) })
	a.Close()
	l1, _, _ := readLineage(m, dir)
	t.Logf("LINEAGE after the first process: shipped %d prev %d", l1.Shipped, l1.Prev)
	st.failing.Store(false)
	st.land(t, mem, key5) // 5's PUT completes

	// The next process: start takes 5 in as retained and notes it; the
	// store is then unreachable for the rest of its life (its first
	// round fails at the List of the owner records).
	st2 := &stashStore{Store: mem}
	st2.failLists.Store(4) // own: 1, readLocation: 2; checkOwner is the 4th
	ro2 := replOpts(st2, 0)
	ro2.RetryMin, ro2.RetryMax = time.Hour, time.Hour
	a = open(t, m, Options{Retain: 3, Replica: ro2})
	waitShipFails(t, a, "the round did not fail")
	a.Close()
	l2, _, _ := readLineage(m, dir)
	t.Logf("LINEAGE after the second process: shipped %d prev %d", l2.Shipped, l2.Prev)

	st.land(t, mem, key6) // 6's PUT (the first process's) completes
	// Snapshot 6 is damaged locally: the DB falls back to 5.
	rewrite(t, m, segment.FileName(6), flipAt(segment.HeaderSize+segment.ChunkHeaderSize))
	a = open(t, m, Options{Retain: 3, Fallback: true, Replica: replOpts(mem, 0)})
	defer a.Close()
	if !a.Report().FellBack {
		t.Fatal("no fallback")
	}
	cur, _ := a.Current()
	l3, _, _ := readLineage(m, dir)
	t.Logf("after the fallback to %d: lineage %s (was %s) shipped %d", cur.ID, l3.ID, lin.ID, l3.Shipped)
	s := commit(t, a, "x", "6'")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.WaitReplicated(ctx, s.ID); err != nil {
		t.Fatalf("a single DB that fell back to %d, its own 6 in the store: %v", cur.ID, err)
	}
}

// The same for a late Create taken in by a round, with a crash before
// the round notes the snapshot it ships on top of it.
func TestLandedNoteKeepsAnUnlandedCreate(t *testing.T) {
	mem := replicatest.NewMemStore()
	st := &stashStore{Store: mem}
	base := vfs.NewMem()
	var armed atomic.Bool
	var writes atomic.Int32
	var crashed *vfs.MemFS
	var cmu sync.Mutex
	fsys := vfs.WithErrors(base, vfs.InjectorFunc(func(op vfs.Op) error {
		if armed.Load() && strings.HasSuffix(op.Path, lineageTmp) && op.Kind == vfs.OpCreate {
			if writes.Add(1) == 2 {
				cmu.Lock()
				crashed = base.CrashClone(vfs.CrashOptions{})
				cmu.Unlock()
			}
			if writes.Load() >= 2 {
				return errors.New("power lost")
			}
		}
		return nil
	}))
	ro := retrying(st, 0, 50*time.Millisecond)
	a := open(t, fsys, Options{Retain: 3, Replica: ro})
	for i := 1; i <= 4; i++ {
		commit(t, a, "x", fmt.Sprint(i), fmt.Sprint("k", i), "v")
	}
	waitShipped(t, a, 4)
	lin, _, _ := readLineage(base, dir)
	key5, key6 := replica.CommitKey(lin.ID, 5), replica.CommitKey(lin.ID, 6)
	st.failing.Store(true)
	commit(t, a, "x", "5")
	eventually(t, "no Create of 5", func() bool { return st.stashed(key5) })
	commit(t, a, "x", "6")
	eventually(t, "no Create of 6", func() bool { return st.stashed(key6) })
	armed.Store(true)
	st.land(t, mem, key5) // 5's PUT completes; the next round takes it in
	eventually(t, "no second LINEAGE write", func() bool {
		cmu.Lock()
		defer cmu.Unlock()
		return crashed != nil
	})
	st.failing.Store(false)
	a.Close()
	l1, _, _ := readLineage(crashed, dir)
	t.Logf("LINEAGE at the crash: shipped %d prev %d", l1.Shipped, l1.Prev)
	st.land(t, mem, key6) // 6's first PUT completes
	rewrite(t, crashed, segment.FileName(6), flipAt(segment.HeaderSize+segment.ChunkHeaderSize))
	a = open(t, crashed, Options{Retain: 3, Fallback: true, Replica: replOpts(mem, 0)})
	defer a.Close()
	if !a.Report().FellBack {
		t.Fatal("no fallback")
	}
	cur, _ := a.Current()
	s := commit(t, a, "x", "6'")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.WaitReplicated(ctx, s.ID); err != nil {
		t.Fatalf("a single DB that fell back to %d, its own 6 in the store: %v", cur.ID, err)
	}
}

// blockDeletes fails every Delete while on.
type blockDeletes struct {
	replica.Store
	on atomic.Bool
}

func (b *blockDeletes) Delete(ctx context.Context, key string) error {
	if b.on.Load() {
		return fmt.Errorf("injected 503: %w", replica.ErrUnavailable)
	}
	return b.Store.Delete(ctx, key)
}

// An owner whose retention fails, taken over by a restored DB before it
// retries, checks the owner records before it deletes anything: the new
// owner's timeline lists its older snapshots, up to the fork.
func TestTakenOverBeforeRetention(t *testing.T) {
	mem := replicatest.NewMemStore()
	m := vfs.NewMem()
	a := openRepl(t, m, mem, Options{Retain: 10, Replica: replOpts(mem, 10)})
	for i := 1; i <= 6; i++ {
		waitShipped(t, a, commit(t, a, "x", fmt.Sprint("a", i)).ID)
	}
	a.Close()
	// Reopened keeping 1 in the store: its retention fails.
	bd := &blockDeletes{Store: mem}
	bd.on.Store(true)
	ro := retrying(bd, 1, 200*time.Millisecond)
	a = open(t, m, Options{Retain: 10, Replica: ro})
	defer a.Close()
	waitShipFails(t, a, "retention did not fail")
	// b, restored from 2, takes the location over; its timeline: a's 1
	// and 2, then its own.
	bfs := vfs.NewMem()
	if _, err := Restore(context.Background(), mem, dir, RestoreOptions{ID: 2, FS: bfs}); err != nil {
		t.Fatal(err)
	}
	b := openRepl(t, bfs, mem, Options{Replica: replOpts(mem, 10)})
	defer b.Close()
	waitShipped(t, b, 2)
	bd.on.Store(false)
	wantFenced(t, a, "the old owner, retrying its retention", "took the location over")
	if got := restored(t, mem, RestoreOptions{ID: 1})["x"]; got != "a1" {
		t.Fatalf("snapshot 1 restored x=%q", got)
	}
}
