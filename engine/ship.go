package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/replica"
	"github.com/instadump/instadump/segment"
)

// Shipping: after each commit, a background goroutine copies what the
// commit made durable to a replica.Store (Options.Replica). Commits never
// wait for it; they only tell it that a new snapshot is current.
//
// A round ships the newest committed snapshot, and whatever it needs that
// the store lacks (a snapshot that retention dropped before its turn
// came is skipped, never shipped half):
//
//  1. Check that this DB's lineage still owns the location (one List of
//     the owner records): a DB restored from it may have taken over.
//  2. Hold the snapshot's segments open, so that garbage collection
//     deleting their names cannot take them away, and upload every one
//     the store lacks (a segment is immutable and its key names its ID
//     and content, so what is there is never uploaded again), streamed
//     from the file.
//  3. Create its commit object, conditionally: it commits the snapshot
//     to the store. If the key is taken and the object there is not this
//     one, another process (a copy of this DB's directory) shipped that
//     snapshot first: shipping stops, fenced.
//  4. Retention: delete the commit objects that no snapshot kept in the
//     store needs (the newest ReplicaOptions.Retain of the location's
//     timeline, and the chains of deltas they stand on), newest first so
//     that every object left always has its whole chain, then the
//     segments no kept commit object lists.
//
// A failure that may pass (replica.ErrUnavailable, or one of unknown
// duration) is retried as a whole round, after an exponential backoff
// with jitter; a new commit meanwhile only changes what the next round
// ships. A failure that will not pass (another DB owns the location,
// credentials or permissions refused: replica.ErrMisconfigured) stops
// shipping for good, and is reported and logged. At start, the shipper
// takes ownership of the location (see replica's doc: the first DB to
// replicate claims it; a DB restored from the owner takes over) and
// lists what its lineage holds, so that a reopened DB resumes where the
// store is.
//
// The first commit object a shipper writes is full; later ones are
// deltas against the one before, until fullEvery deltas, or deltas
// adding up to more bytes than their full base, call for a full one
// again: a restore reads a bounded chain.

// ErrFenced reports that a replica location belongs to another DB: one
// that claimed it first, or one restored from this DB that took it over,
// or another copy of this DB's directory that shipped first. Shipping
// stops; local saving goes on.
var ErrFenced = errors.New("instadump: replica location is owned by another DB")

// ReplicaOptions configure shipping (Options.Replica).
type ReplicaOptions struct {
	// Store is where committed snapshots are shipped; nil for none.
	Store replica.Store
	// Retain is how many snapshots the store keeps (at least): the
	// newest of the location's timeline. Options.Retain when 0.
	Retain int
	// Grace is how long Close lets the shipper finish shipping the
	// current snapshot before it cancels it. 0: Close cancels at once
	// (what is not shipped is shipped by the next Open).
	Grace time.Duration
	// RetryMin and RetryMax bound the backoff between failed rounds
	// (DefaultRetryMin and DefaultRetryMax when 0).
	RetryMin, RetryMax time.Duration
}

// The backoff between failed rounds, by default.
const (
	DefaultRetryMin = 500 * time.Millisecond
	DefaultRetryMax = 30 * time.Second
)

// fullEvery is the most deltas shipped in a row before a full commit
// object.
const fullEvery = 16

// ReplicaStatus is what a shipper reports.
type ReplicaStatus struct {
	Store   string // where: the Store's String, which holds no secret
	Lineage string // this DB's lineage
	// Shipped is the newest snapshot in the store (0: none yet), saved at
	// ShippedTime, and in the store since ShippedAt.
	Shipped     uint64
	ShippedTime time.Time
	ShippedAt   time.Time
	// Current is the newest local snapshot; Pending the local snapshots
	// newer than Shipped; Behind the bytes of segments Current uses that
	// the store lacks; Lag how long ago the oldest retained snapshot not
	// yet in the store was saved (0 when up to date).
	Current uint64
	Pending int
	Behind  int64
	Lag     time.Duration
	// Err is the last failure (nil once a round succeeds), at ErrTime.
	Err     error
	ErrTime time.Time
	// Stopped is set when shipping has stopped for good: fenced
	// (errors.Is(Stopped, ErrFenced)), refused by the store
	// (replica.ErrMisconfigured), or the DB closed.
	Stopped error
}

// lastShipped is what the shipper knows of the newest commit object it
// wrote or found.
type lastShipped struct {
	id, sum, base uint64
	time          time.Time
	states        map[string]Ref // nil when unknown (found at start): the next object is full
	deltas        int            // deltas since the base
	deltaBytes    int            // their sizes
	baseBytes     int            // the size of the base
}

type shipper struct {
	e   *Engine
	st  replica.Store
	o   ReplicaOptions
	log *slog.Logger
	lin Lineage

	wake   chan struct{} // a commit was installed (capacity 1)
	quit   chan struct{} // closed when Close begins
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex    // guards what follows, up to the goroutine's own
	status  ReplicaStatus // but Current, Pending, Behind and Lag
	present map[uint64]bool
	changed chan struct{} // closed and replaced when Shipped or Stopped change

	// The goroutine's own.
	started bool
	owner   uint64 // the sequence number of our owner record
	owners  []replica.Owner
	loc     *location
	last    *lastShipped
	floor   uint64 // no commit object is created at or below it
	tidy    bool   // retention is due
	tags    map[uint64]uint64
	// After a failed round: a commit object whose Create failed in a way
	// that may have created it, and whether to list the segments again
	// (an upload whose answer was lost may have stored one).
	pending *pendingCommit
	relist  bool
}

// pendingCommit is a commit object that may be in the store.
type pendingCommit struct {
	key  string
	b    []byte
	c    *replica.Commit
	next *lastShipped
}

// startShipper reads or makes the DB's lineage and starts shipping.
func (e *Engine) startShipper() error {
	o := e.opts.Replica
	if e.opts.ReadOnly {
		return fmt.Errorf("instadump: cannot replicate %s to %s: the DB is open read-only", e.dir, o.Store)
	}
	if o.Retain == 0 {
		o.Retain = e.opts.Retain
	}
	if o.Retain < 1 {
		return fmt.Errorf("instadump: the replica of %s retains %d snapshots: must be at least 1", e.dir, o.Retain)
	}
	if o.RetryMin <= 0 {
		o.RetryMin = DefaultRetryMin
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(o.RetryMin, DefaultRetryMax)
	}
	lin, err := e.lineage()
	if err != nil {
		return err
	}
	s := &shipper{e: e, st: o.Store, o: o, lin: lin, log: e.log.With("replica", o.Store.String()),
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
		present: map[uint64]bool{}, changed: make(chan struct{}), tags: map[uint64]uint64{}}
	s.status = ReplicaStatus{Store: o.Store.String(), Lineage: lin.ID.String()}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	e.ship = s
	go s.run()
	return nil
}

// lineage reads the DB's lineage, or makes one: a new one for a DB that
// never replicated, or one continuing from the old one for a DB that fell
// back to an older snapshot than the one it may have shipped.
func (e *Engine) lineage() (Lineage, error) {
	l, ok, err := readLineage(e.fs, e.dir)
	if err != nil {
		return l, err
	}
	if ok && !e.report.FellBack {
		return l, nil
	}
	var next Lineage
	if next.ID, err = replica.NewLineage(); err != nil {
		return l, err
	}
	if cur, has := e.Current(); ok && has {
		next.Parent, next.Fork = l.ID, cur.ID
		e.log.Warn("instadump: the DB fell back to an older snapshot, so it replicates as a new lineage that takes over from the old one", "lineage", next.ID, "parent", l.ID, "fork", cur.ID)
	}
	if err := writeLineage(e.fs, e.dir, next); err != nil {
		return l, err
	}
	return next, nil
}

// notifyShipper tells the shipper that a new snapshot is current. It
// never blocks.
func (e *Engine) notifyShipper() {
	if e.ship == nil {
		return
	}
	select {
	case e.ship.wake <- struct{}{}:
	default: // a wake-up is pending: it will see the newest
	}
}

// stopShipper stops the shipper (after its grace period) and waits for
// it.
func (e *Engine) stopShipper() {
	if s := e.ship; s != nil {
		s.once.Do(func() { close(s.quit) })
		if s.o.Grace > 0 {
			t := time.NewTimer(s.o.Grace)
			select {
			case <-s.done:
			case <-t.C:
			}
			t.Stop()
		}
		s.cancel()
		<-s.done
	}
}

func (s *shipper) run() {
	defer close(s.done)
	var b backoff
	b.min, b.max = s.o.RetryMin, s.o.RetryMax
	failing := false
	for {
		closing := false
		select {
		case <-s.quit:
			closing = true
		default:
		}
		if closing && (s.upToDate() || s.ctx.Err() != nil) {
			s.halt(errs.ErrClosed)
			return
		}
		err := s.round()
		if err != nil {
			s.relist = true
		}
		switch {
		case err == nil:
			b.reset()
			if failing {
				s.log.Info("instadump: replication works again")
				failing = false
			}
			s.setErr(nil)
		case s.ctx.Err() != nil:
			s.halt(errs.ErrClosed)
			return
		case permanent(err):
			s.log.Error("instadump: replication stopped; local saving goes on", "err", err)
			s.halt(err)
			return
		default:
			wait := b.next()
			s.log.Warn("instadump: replication failed; retrying", "err", err, "retry_in", wait.Round(time.Millisecond))
			s.setErr(err)
			failing = true
			if closing || !s.sleep(wait) {
				s.halt(errs.ErrClosed)
				return
			}
			continue
		}
		if closing {
			continue // the grace period: ship the newest, then stop
		}
		select {
		case <-s.wake:
		case <-s.quit:
		}
	}
}

// sleep waits d, or less if Close begins; false if it did.
func (s *shipper) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.quit:
		return false
	}
}

// permanent says whether err will not pass by retrying.
func permanent(err error) bool {
	return errors.Is(err, ErrFenced) || errors.Is(err, replica.ErrMisconfigured) || errors.Is(err, replica.ErrInvalidKey) ||
		errors.Is(err, errs.ErrUnsupportedVersion) || errors.Is(err, errs.ErrClosed)
}

// upToDate says whether the newest local snapshot is shipped.
func (s *shipper) upToDate() bool {
	cur, ok := s.e.Current()
	return !ok || (s.last != nil && s.last.id >= cur.ID) || cur.ID <= s.floor
}

func (s *shipper) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.Err = err
	if err != nil {
		s.status.ErrTime = time.Now()
	}
}

// halt records why shipping stopped and wakes the waiters.
func (s *shipper) halt(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status.Stopped == nil {
		s.status.Stopped = err
		if !errors.Is(err, errs.ErrClosed) {
			s.status.Err, s.status.ErrTime = err, time.Now()
		}
		close(s.changed)
		s.changed = make(chan struct{})
	}
}

// shipped records that snapshot last is in the store: shipping works,
// whatever failed before.
func (s *shipper) shipped(last *lastShipped) {
	s.last = last
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.Shipped, s.status.ShippedTime, s.status.ShippedAt = last.id, last.time, time.Now()
	s.status.Err = nil
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *shipper) round() error {
	ctx := s.ctx
	if !s.started {
		if err := s.start(ctx); err != nil {
			return err
		}
		s.started = true
	}
	if err := s.recheck(ctx); err != nil {
		return err
	}
	if !s.upToDate() {
		if err := s.checkOwner(ctx); err != nil {
			return err
		}
		cur, _ := s.e.Current()
		if err := s.ship(ctx, cur.ID); err != nil {
			return err
		}
	}
	if s.tidy {
		if err := s.retain(ctx); err != nil {
			return err
		}
		s.tidy = false
	}
	return nil
}

// recheck finds out, after a failed round, what the failure may have
// stored after all: segments whose upload's answer was lost (one List),
// and the commit object whose Create failed (one Get).
func (s *shipper) recheck(ctx context.Context) error {
	ours := s.loc.lineages[s.lin.ID]
	if s.relist {
		objs, err := list(ctx, s.st, replica.SegmentPrefix(s.lin.ID))
		if err != nil {
			return fmt.Errorf("instadump: listing the segments of lineage %s in %s: %w", s.lin.ID, s.st, err)
		}
		for _, o := range objs {
			if kind, l, id, _, ok := replica.ParseKey(o.Key); ok && kind == "seg" && l == s.lin.ID {
				ours.segs[o.Key] = o.Size
				s.mu.Lock()
				s.present[id] = true
				s.mu.Unlock()
			}
		}
		s.relist = false
	}
	if p := s.pending; p != nil {
		theirs, err := s.readBack(ctx, p.key, len(p.b))
		switch {
		case errors.Is(err, replica.ErrNotFound):
		case err != nil:
			return fmt.Errorf("instadump: reading back %s: %w", where(s.st, p.key), err)
		case !bytes.Equal(theirs, p.b):
			return s.fenced("another process shipped snapshot %d of this DB's lineage %s first: a copy of this DB's directory replicates here too", p.c.Snapshot, s.lin.ID)
		default:
			s.committed(p)
		}
		s.pending = nil
	}
	return nil
}

// committed records that commit object p is in the store.
func (s *shipper) committed(p *pendingCommit) {
	p.next.sum = binary.LittleEndian.Uint64(p.b[len(p.b)-8:])
	s.loc.lineages[s.lin.ID].commits[p.c.Snapshot] = &commitObj{key: p.key, size: int64(len(p.b)), c: p.c, sum: p.next.sum}
	s.shipped(p.next)
	s.tidy = true
}

// fenced returns an error wrapping ErrFenced.
func (s *shipper) fenced(format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrFenced, s.st, fmt.Sprintf(format, args...))
}

// start takes ownership of the location (or finds it is fenced), and
// reads what the store holds of this lineage and those before it.
func (s *shipper) start(ctx context.Context) error {
	if err := s.own(ctx); err != nil {
		return err
	}
	loc, err := readLocation(ctx, s.st)
	if err != nil {
		return err
	}
	if loc.lineages[s.lin.ID] == nil {
		loc.lineages[s.lin.ID] = &lineageObjs{id: s.lin.ID, commits: map[uint64]*commitObj{}, segs: map[string]int64{}}
	}
	s.loc = loc
	ours := loc.lineages[s.lin.ID]
	s.mu.Lock()
	for key := range ours.segs {
		if _, _, id, _, ok := replica.ParseKey(key); ok {
			s.present[id] = true
		}
	}
	s.mu.Unlock()
	ids := slices.Sorted(maps.Keys(ours.commits))
	if len(ids) == 0 {
		s.tidy = true
		return nil
	}
	newest := ids[len(ids)-1]
	s.floor = newest
	cur, _ := s.e.Current()
	if newest > cur.ID {
		return s.fenced("it holds snapshot %d of this DB's lineage %s, newer than this directory's newest, %d: another copy of this DB's directory replicates here, or this directory is an old copy (restore from the store to continue from it)", newest, s.lin.ID, cur.ID)
	}
	for _, id := range slices.Backward(ids) {
		co := ours.commits[id]
		if co.c == nil {
			s.log.Error("instadump: a commit object of this DB in the store is damaged; it is skipped", "err", co.err)
			continue
		}
		if err := s.sameAsLocal(co.c); err != nil {
			return err
		}
		s.shipped(&lastShipped{id: id, sum: co.sum, base: co.c.Base, time: co.c.Record.Time})
		break
	}
	s.tidy = true
	s.log.Info("instadump: replication resumes", "lineage", s.lin.ID, "shipped", s.floor)
	return nil
}

// sameAsLocal checks that c, found in this lineage, is the local
// snapshot of its ID when that is still retained: the same time and the
// same segments. Otherwise another copy of this directory shipped it.
func (s *shipper) sameAsLocal(c *replica.Commit) error {
	h, ok, err := s.e.holdSnapshot(c.Snapshot, s.tags)
	if err != nil || !ok {
		return err
	}
	defer h.release()
	refs := make([]replica.SegmentRef, len(h.segs))
	for i, sg := range h.segs {
		refs[i] = sg.ref
	}
	if !c.Record.Time.Equal(h.snap.Time) || !slices.Equal(refs, c.Segments) {
		return s.fenced("its snapshot %d of this DB's lineage %s is not this directory's snapshot %d: another copy of this DB's directory replicates here", c.Snapshot, s.lin.ID, c.Snapshot)
	}
	return nil
}

// own makes sure this DB's lineage owns the location: it claims an empty
// one, takes over from its parent, or finds it is fenced.
func (s *shipper) own(ctx context.Context) error {
	for range 8 {
		owners, err := readOwners(ctx, s.st, s.owners)
		if err != nil {
			return err
		}
		s.owners = owners
		next := replica.Owner{Seq: 1, Lineage: s.lin.ID, Parent: s.lin.Parent, Fork: s.lin.Fork, Time: time.Now().UTC()}
		if n := len(owners); n > 0 {
			cur := owners[n-1]
			switch {
			case cur.Lineage == s.lin.ID:
				s.owner = cur.Seq
				return nil
			case !s.lin.Parent.IsZero() && cur.Lineage == s.lin.Parent:
				next.Seq = cur.Seq + 1 // take over from the DB this one was restored from
			default:
				return s.notOwner(cur)
			}
		}
		err = s.st.Create(ctx, replica.OwnerKey(next.Seq), bytes.NewReader(next.Encode()), replica.OwnerSize)
		if err != nil && !errors.Is(err, replica.ErrExists) {
			return fmt.Errorf("instadump: claiming %s for lineage %s: %w", s.st, s.lin.ID, err)
		}
		if err == nil {
			s.owner = next.Seq
			s.owners = append(owners, next)
			if next.Seq == 1 {
				s.log.Info("instadump: replicating to an empty location: claimed it", "lineage", s.lin.ID)
			} else {
				s.log.Warn("instadump: took the replica location over from the DB this one was restored from", "lineage", s.lin.ID, "from", s.lin.Parent, "fork", s.lin.Fork)
			}
			return nil
		}
		// Someone else created that record first (or our own attempt
		// did, its answer lost): look again.
	}
	return fmt.Errorf("instadump: %s: the owner records keep changing while lineage %s tries to claim the location: %w", s.st, s.lin.ID, replica.ErrUnavailable)
}

// notOwner explains why cur's owning the location fences this DB.
func (s *shipper) notOwner(cur replica.Owner) error {
	for _, o := range s.owners {
		if o.Lineage == s.lin.ID {
			return s.fenced("lineage %s, restored from this DB, took the location over at %s (owner record %d): this DB no longer ships there; restore from the location to continue from its snapshots", cur.Lineage, cur.Time.Format(time.RFC3339), cur.Seq)
		}
	}
	if !s.lin.Parent.IsZero() {
		return s.fenced("it belongs to lineage %s, not to lineage %s this DB was restored from: replicate to another location (prefix), or restore from this one to take it over", cur.Lineage, s.lin.Parent)
	}
	return s.fenced("it belongs to lineage %s, another DB: replicate to another location (prefix), or restore from this one to take it over", cur.Lineage)
}

// checkOwner makes sure no DB has taken the location over since: one
// List, and a Get of any new owner record.
func (s *shipper) checkOwner(ctx context.Context) error {
	owners, err := readOwners(ctx, s.st, s.owners)
	if err != nil {
		return err
	}
	s.owners = owners
	if n := len(owners); n == 0 || owners[n-1].Seq != s.owner {
		if n == 0 {
			return s.fenced("its owner records are gone: replicate to another location")
		}
		return s.notOwner(owners[n-1])
	}
	return nil
}

// ship uploads snapshot id: the segments the store lacks, then its
// commit object.
func (s *shipper) ship(ctx context.Context, id uint64) error {
	h, ok, err := s.e.holdSnapshot(id, s.tags)
	if err != nil {
		return err
	}
	if !ok {
		return nil // dropped by retention meanwhile: the next round ships the newest
	}
	defer h.release()
	ours := s.loc.lineages[s.lin.ID]
	for _, sg := range h.segs {
		key := replica.SegmentKey(s.lin.ID, sg.ref)
		if size, ok := ours.segs[key]; ok && size == sg.ref.Size {
			continue
		}
		if err := s.st.Put(ctx, key, io.NewSectionReader(sg.f, 0, sg.ref.Size), sg.ref.Size); err != nil {
			return fmt.Errorf("instadump: uploading segment %s of snapshot %d: %w", segment.FileName(sg.ref.ID), id, err)
		}
		ours.segs[key] = sg.ref.Size
		s.mu.Lock()
		s.present[sg.ref.ID] = true
		s.mu.Unlock()
	}
	c, next, err := s.commitObject(h)
	if err != nil {
		return err
	}
	b, err := c.Encode()
	if err != nil {
		return fmt.Errorf("instadump: encoding the commit object of snapshot %d: %w", id, err)
	}
	p := &pendingCommit{key: replica.CommitKey(s.lin.ID, id), b: b, c: c, next: next}
	err = s.st.Create(ctx, p.key, bytes.NewReader(b), int64(len(b)))
	if errors.Is(err, replica.ErrExists) {
		// Ours, from an attempt whose answer was lost, or another copy
		// of this directory's.
		s.pending = p
		return s.recheck(ctx)
	}
	if err != nil {
		s.pending = p // it may be there all the same: the next round looks
		return fmt.Errorf("instadump: committing snapshot %d to the store: %w", id, err)
	}
	s.committed(p)
	return nil
}

// readBack reads the object key, expecting want bytes (it reads at most
// one more, so that a longer object differs).
func (s *shipper) readBack(ctx context.Context, key string, want int) ([]byte, error) {
	var b []byte
	err := withRetry(ctx, func() error {
		rc, err := s.st.Get(ctx, key)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err = io.ReadAll(io.LimitReader(rc, int64(want)+1))
		return err
	})
	return b, err
}

// commitObject returns the commit object of held snapshot h (a delta on
// the last shipped one, when that is known and a delta is due) and what
// will be known of it once shipped.
func (s *shipper) commitObject(h *heldSnapshot) (*replica.Commit, *lastShipped, error) {
	c := &replica.Commit{Lineage: s.lin.ID, Snapshot: h.snap.ID, Segments: make([]replica.SegmentRef, len(h.segs))}
	for i, sg := range h.segs {
		c.Segments[i] = sg.ref
	}
	next := &lastShipped{id: h.snap.ID, time: h.snap.Time, states: h.states}
	if last := s.last; last != nil {
		c.Prev, c.PrevSum = last.id, last.sum
		if last.states != nil && last.deltas+1 < fullEvery {
			changed, removed := diff(last.states, h.states)
			c.Base = last.base
			c.Record = manifest.Record{Kind: manifest.Delta, Snapshot: h.snap.ID, Time: h.snap.Time, NextSegment: h.nextSeg,
				Written: h.snap.Written, States: changed, Removed: removed}
			b, err := c.Encode()
			if err != nil {
				return nil, nil, fmt.Errorf("instadump: encoding the commit object of snapshot %d: %w", h.snap.ID, err)
			}
			if last.deltaBytes+len(b) <= last.baseBytes {
				next.base, next.deltas, next.deltaBytes, next.baseBytes = last.base, last.deltas+1, last.deltaBytes+len(b), last.baseBytes
				return c, next, nil
			}
		}
	}
	c.Base = h.snap.ID
	c.Record = fullRecord(h.snap, h.nextSeg, h.states)
	b, err := c.Encode()
	if err != nil {
		return nil, nil, fmt.Errorf("instadump: encoding the commit object of snapshot %d: %w", h.snap.ID, err)
	}
	next.base, next.baseBytes = h.snap.ID, len(b)
	return c, next, nil
}

// retain deletes what the store keeps beyond the newest Retain snapshots
// of the location's timeline: first the commit objects no kept snapshot
// needs, newest first, then the segments no kept commit object lists.
// Only objects of this lineage and of those it took over from are
// touched.
func (s *shipper) retain(ctx context.Context) error {
	tl := s.loc.timeline()
	needed := map[*commitObj]bool{}
	for _, e := range tl[max(0, len(tl)-s.o.Retain):] {
		for o := e.obj; o != nil && o.c != nil && !needed[o]; o = e.lin.commits[o.c.Prev] {
			needed[o] = true
			if o.c.Full() {
				break
			}
		}
	}
	segs := map[string]bool{}
	for o := range needed {
		for _, sg := range o.c.Segments {
			segs[replica.SegmentKey(o.c.Lineage, sg)] = true
		}
	}
	lins := slices.SortedFunc(maps.Values(s.loc.lineages), func(a, b *lineageObjs) int { return bytes.Compare(a.id[:], b.id[:]) })
	for _, lo := range lins {
		// Newest first: whatever a crash leaves between two deletions,
		// the chain of every commit object left is whole.
		for _, id := range slices.Backward(slices.Sorted(maps.Keys(lo.commits))) {
			if o := lo.commits[id]; !needed[o] {
				if err := s.st.Delete(ctx, o.key); err != nil {
					return fmt.Errorf("instadump: retention: deleting %s: %w", o.key, err)
				}
				delete(lo.commits, id)
			}
		}
	}
	for _, lo := range lins {
		for _, key := range slices.Sorted(maps.Keys(lo.segs)) {
			if !segs[key] {
				if err := s.st.Delete(ctx, key); err != nil {
					return fmt.Errorf("instadump: retention: deleting %s: %w", key, err)
				}
				delete(lo.segs, key)
				if lo.id == s.lin.ID {
					if _, _, id, _, ok := replica.ParseKey(key); ok {
						s.mu.Lock()
						delete(s.present, id)
						s.mu.Unlock()
					}
				}
			}
		}
	}
	return nil
}

// heldSnapshot is a retained snapshot whose segments are held open.
type heldSnapshot struct {
	snap    Snapshot
	nextSeg uint64
	states  map[string]Ref
	segs    []heldSegment // by ID
	release func()
}

// heldSegment is a segment file held open: a read of f works even once
// garbage collection has deleted its name.
type heldSegment struct {
	ref replica.SegmentRef
	f   io.ReaderAt
}

// holdSnapshot returns retained snapshot id with its segments held open,
// or false if it is not retained. tags caches the segments' tags by ID
// (a segment's ID names one file for the life of the engine).
func (e *Engine) holdSnapshot(id uint64, tags map[uint64]uint64) (*heldSnapshot, bool, error) {
	e.mu.Lock()
	i := e.index(id)
	if i < 0 {
		e.mu.Unlock()
		return nil, false, nil
	}
	h := &heldSnapshot{snap: e.snaps[i].Snapshot, nextSeg: e.snaps[i].nextSeg, states: e.statesAt(i)}
	var held []*segReader
	h.release = func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, r := range held {
			e.release(r)
		}
		held = nil
	}
	var err error
	for _, sid := range segmentsOf(h.states) {
		var r *segReader
		if r, err = e.acquire(sid); err != nil {
			break
		}
		held = append(held, r)
	}
	e.mu.Unlock()
	if err != nil {
		h.release()
		return nil, true, fmt.Errorf("instadump: holding snapshot %d to ship it: %w", id, err)
	}
	for _, r := range held {
		tag, ok := tags[r.ID()]
		if !ok {
			// The trailer's checksum of itself: checked when the
			// segment was opened, and a fingerprint of its index.
			var b [8]byte
			if _, err := r.f.ReadAt(b[:], r.Size()-segment.TrailerSize+32); err != nil {
				h.release()
				return nil, true, fmt.Errorf("instadump: reading the trailer of %s: %w", r.File(), err)
			}
			tag = binary.LittleEndian.Uint64(b[:])
			tags[r.ID()] = tag
		}
		h.segs = append(h.segs, heldSegment{ref: replica.SegmentRef{ID: r.ID(), Size: r.Size(), Tag: tag}, f: r.f})
	}
	return h, true, nil
}

// ReplicaStatus returns the shipper's status; false if the engine does
// not replicate.
func (e *Engine) ReplicaStatus() (ReplicaStatus, bool) {
	s := e.ship
	if s == nil {
		return ReplicaStatus{}, false
	}
	s.mu.Lock()
	st := s.status
	present := maps.Clone(s.present)
	s.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if n := len(e.snaps); n > 0 {
		st.Current = e.snaps[n-1].ID
		for _, sn := range e.snaps {
			if sn.ID > st.Shipped {
				st.Pending++
				if st.Lag == 0 {
					st.Lag = time.Since(sn.Time)
				}
			}
		}
		if st.Shipped < st.Current {
			seen := map[uint64]bool{}
			for _, r := range e.cur {
				locs(&r, func(l *Loc) {
					if !seen[l.Segment] && !present[l.Segment] {
						seen[l.Segment] = true
						if sr := e.readers[l.Segment]; sr != nil {
							st.Behind += sr.Size()
						}
					}
				})
			}
		}
	}
	return st, true
}

// WaitReplicated returns once snapshot id (0: the current one when it is
// called), or a newer one, is in the store; or ctx's error; or, once
// shipping has stopped, why it did.
func (e *Engine) WaitReplicated(ctx context.Context, id uint64) error {
	s := e.ship
	if s == nil {
		return fmt.Errorf("instadump: WaitReplicated on %s, which does not replicate", e.dir)
	}
	if id == 0 {
		cur, ok := e.Current()
		if !ok {
			return nil
		}
		id = cur.ID
	}
	for {
		s.mu.Lock()
		shipped, stopped, changed := s.status.Shipped, s.status.Stopped, s.changed
		s.mu.Unlock()
		switch {
		case shipped >= id:
			return nil
		case stopped != nil:
			return fmt.Errorf("instadump: waiting for snapshot %d to reach %s: %w", id, s.st, stopped)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("instadump: waiting for snapshot %d to reach %s (it holds snapshot %d): %w", id, s.st, shipped, ctx.Err())
		case <-changed:
		}
	}
}
