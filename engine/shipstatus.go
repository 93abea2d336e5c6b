package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/replica"
)

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
func (e *Engine) ReplicaStatus() (replica.Status, bool) {
	s := e.ship
	if s == nil {
		return replica.Status{}, false
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
