package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/replica"
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
//  3. Note in LINEAGE the snapshot about to be shipped, with its commit
//     object's checksum (noteShipped), then list the lineage (alone): a
//     commit object this process neither found at start nor shipped is
//     another copy's of this DB's directory, which fences it, unless it
//     is this directory's own (ours: a Create that failed here and
//     landed late, or one of a snapshot it retains, the same); a segment
//     gone since it was uploaded is uploaded again.
//  4. Create its commit object, conditionally: it commits the snapshot
//     to the store. If the key is taken and the object there is not this
//     one, another process (a copy of this DB's directory) shipped that
//     snapshot first: shipping stops, fenced. Then list the owner
//     records and the lineage again (confirm): a copy that listed before
//     this Create and created after it is seen (of two such Creates, at
//     least one sees the other), and so is a DB that took the location
//     over meanwhile; seeing either, the shipper deletes its commit
//     object again and is fenced. Only then is the snapshot replicated.
//  5. Retention: delete the commit objects that no snapshot kept in the
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

	mu      sync.Mutex     // guards what follows, up to the goroutine's own
	status  replica.Status // but Current, Pending, Behind, Lag and Fenced
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
	// tried are the checksums of commit objects by key whose Create
	// failed and which then read back as absent, and of the one LINEAGE
	// notes as shipped last if the store lacked it at start: such a
	// Create may still land (an S3 PUT the server completes after the
	// client gave up), and one that does is this directory's, not a
	// copy's (ours).
	tried map[string]uint64
	// foreign are the commit objects of other processes the last List
	// of the lineage found (alone).
	foreign []*replica.Commit
}

// pendingCommit is a commit object that may be in the store.
type pendingCommit struct {
	key  string
	b    []byte
	c    *replica.Commit
	next *lastShipped
}

// sum is p's checksum.
func (p *pendingCommit) sum() uint64 { return binary.LittleEndian.Uint64(p.b[len(p.b)-8:]) }

// obj is p as a commit object in the store.
func (p *pendingCommit) obj() *commitObj {
	return &commitObj{key: p.key, size: int64(len(p.b)), c: p.c, sum: p.sum()}
}

// checkReplica refuses replica options that cannot mean what was asked,
// before recovery writes anything.
func (o *Options) checkReplica(dir string) error {
	r := o.Replica
	switch {
	case r.Store == nil:
		return nil
	case o.ReadOnly:
		return fmt.Errorf("%w: cannot replicate %s to %s: the DB is open read-only (the DB that saves replicates)", errs.ErrBadOption, dir, r.Store)
	case r.Retain < 0:
		return fmt.Errorf("%w: the replica of %s retains %d snapshots: must be at least 1", errs.ErrBadOption, dir, r.Retain)
	case r.Grace < 0:
		return fmt.Errorf("%w: a replica grace of %v for %s: must not be negative", errs.ErrBadOption, r.Grace, dir)
	}
	return nil
}

// startShipper reads or makes the DB's lineage and starts shipping.
func (e *Engine) startShipper() error {
	o := e.opts.Replica
	if o.Retain == 0 {
		o.Retain = e.opts.Retain
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
		present: map[uint64]bool{}, changed: make(chan struct{}), tags: map[uint64]uint64{}, tried: map[string]uint64{}}
	s.status = replica.Status{Store: o.Store.String(), Lineage: lin.ID.String()}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	e.ship = s
	go s.run()
	return nil
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

// noteShipped writes into LINEAGE, durably, that this directory may ship
// snapshot id, whose commit object has checksum sum, before it does,
// with the last it shipped (or found) before: at the next open, a store
// whose newest snapshot is neither, and not one the directory retains to
// compare, was shipped to by a copy of it (start), and a fallback to a
// snapshot no older than the note keeps the lineage (lineage). The note
// must cover everything shipped, so a failure fails the round: nothing
// is shipped until LINEAGE can be written.
func (s *shipper) noteShipped(id, sum uint64) error {
	if s.last == nil {
		return s.note(id, sum, 0, 0)
	}
	return s.note(id, sum, s.last.id, s.last.sum)
}

// noteStored writes into LINEAGE, durably, that commit object id, with
// checksum sum, is this directory's newest known in the store: one taken
// in (a Create that landed late, or one of a snapshot it retains), with
// nothing of this directory's after it that LINEAGE does not note. A
// newer one noted as shipped stays noted: its Create may land yet.
func (s *shipper) noteStored(id, sum uint64) error {
	if l := s.lin; l.SumsKnown && l.Shipped > id {
		return s.note(l.Shipped, l.ShippedSum, id, sum)
	}
	return s.note(id, sum, id, sum)
}

func (s *shipper) note(id, sum, prev, prevSum uint64) error {
	l := s.lin
	l.Shipped, l.ShippedSum, l.Prev, l.PrevSum = id, sum, prev, prevSum
	l.ShippedKnown, l.SumsKnown = true, true
	if l == s.lin {
		return nil
	}
	if err := writeLineage(s.e.fs, s.e.dir, l); err != nil {
		return fmt.Errorf("instadump: noting snapshot %d of the store in %s: %w", id, LineageFile, err)
	}
	s.lin = l
	return nil
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
