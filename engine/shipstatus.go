package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/instadump/instadump/internal/errs"
)

// ReplicaStatus says how shipping to the replica goes.
type ReplicaStatus struct {
	// Store describes the replica (its String, never with a secret);
	// empty when the DB does not replicate. Lineage is this DB's history
	// in it.
	Store   string
	Lineage string
	// Shipped is the newest snapshot in the replica (0: none yet), saved
	// at ShippedTime and in the replica since ShippedAt.
	Shipped     uint64
	ShippedTime time.Time
	ShippedAt   time.Time
	// How far behind the replica is: Current is the newest local
	// snapshot, Pending how many local snapshots are newer than Shipped,
	// Behind the bytes the replica lacks to hold Current, and Lag how long
	// ago the oldest retained snapshot not yet shipped was saved (0 when
	// up to date).
	Current uint64
	Pending int
	Behind  int64
	Lag     time.Duration
	// Err is the last failure, at ErrTime; nil once shipping succeeds
	// again.
	Err     error
	ErrTime time.Time
	// Stopped is non-nil once shipping has stopped for good: fenced,
	// refused by the store (replica.ErrMisconfigured), or the DB closed.
	// Fenced is set when that is because another DB owns the location
	// (ErrFenced).
	Stopped error
	Fenced  bool
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

// upToDate says whether the newest local snapshot is shipped.
func (s *shipper) upToDate() bool {
	cur, ok := s.e.Current()
	return !ok || (s.last != nil && s.last.id >= cur.ID) || cur.ID <= s.floor
}

func (s *shipper) setErr(err error) {
	err = errs.InReplica(err)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.Err = err
	if err != nil {
		s.status.ErrTime = time.Now()
	}
}

// halt records why shipping stopped and wakes the waiters.
func (s *shipper) halt(err error) {
	err = errs.InReplica(err)
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
	st.Fenced = errors.Is(st.Stopped, ErrFenced)
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
			return fmt.Errorf("%w (so snapshot %d will not reach it)", stopped, id) // stopped names the store
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("instadump: waiting for snapshot %d to reach %s (it holds snapshot %d): %w", id, s.st, shipped, ctx.Err())
		case <-changed:
		}
	}
}
