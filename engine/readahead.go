package engine

import (
	"cmp"
	"slices"
	"sync"
)

// Read-ahead: after Open, one goroutine reads, verifies and decompresses
// the current snapshot's values (value states, a map's parts and deltas)
// in the order they lie in the segments, while the program registers its
// states and decodes what is ready: a load uses a second core. At most
// Options.ReadAhead bytes wait to be claimed (one value at least); each
// is handed to the first Read of its location, then forgotten. It stops
// when it is done, at the first commit and at Close; a Read of a value it
// has not reached reads it itself.

// readAhead is the state of the read-ahead, shared by its goroutine and
// Read.
type readAhead struct {
	mu      sync.Mutex
	cond    sync.Cond // signalled when held drops or stop is called
	budget  int64
	held    int64 // bytes read and not yet claimed
	slots   map[Loc]*slot
	stopped bool
}

// slot is one value to read ahead. done is nil until the read starts,
// closed when it ends; raw is nil if it failed (the claimer reads again,
// and gets the error with its context).
type slot struct {
	done chan struct{}
	raw  []byte
}

// startReadAhead starts reading the current snapshot's values ahead.
// Open calls it, before the engine is shared.
func (e *Engine) startReadAhead() {
	var locs []Loc
	for _, r := range e.cur {
		locs = appendLocs(locs, &r)
	}
	if len(locs) == 0 || e.opts.ReadAhead <= 0 {
		return
	}
	slices.SortFunc(locs, func(a, b Loc) int {
		return cmp.Or(cmp.Compare(a.Segment, b.Segment), cmp.Compare(a.Offset, b.Offset))
	})
	ra := &readAhead{budget: e.opts.ReadAhead, slots: make(map[Loc]*slot, len(locs))}
	ra.cond.L = &ra.mu
	for _, l := range locs {
		ra.slots[l] = &slot{}
	}
	e.ra = ra
	go func() {
		for _, l := range locs {
			s, ok := ra.next(l)
			if !ok {
				return
			}
			if s != nil {
				raw, err := e.readDirect(l)
				ra.fill(s, raw, err)
			}
		}
	}()
}

// next waits until l may be read ahead and returns its slot, marked
// started, or nil if l was claimed before its turn; false means stop.
func (ra *readAhead) next(l Loc) (*slot, bool) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for !ra.stopped && ra.held > 0 && ra.held+l.RawLen > ra.budget {
		ra.cond.Wait()
	}
	if ra.stopped {
		return nil, false
	}
	s := ra.slots[l]
	if s != nil {
		s.done = make(chan struct{})
	}
	return s, true
}

// fill ends the read of slot s, claimed or not.
func (ra *readAhead) fill(s *slot, raw []byte, err error) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if err == nil {
		s.raw = raw
		ra.held += int64(len(raw))
	}
	close(s.done)
}

// claim returns the bytes of l read ahead, waiting if the read is under
// way, or nil if the caller must read l itself.
func (ra *readAhead) claim(l Loc) []byte {
	ra.mu.Lock()
	s := ra.slots[l]
	if s != nil {
		delete(ra.slots, l)
	}
	ra.mu.Unlock()
	if s == nil || s.done == nil {
		return nil
	}
	<-s.done
	if s.raw != nil {
		ra.mu.Lock()
		ra.held -= int64(len(s.raw))
		ra.cond.Signal()
		ra.mu.Unlock()
	}
	return s.raw
}

// stopReadAhead stops the read-ahead, if any.
func (e *Engine) stopReadAhead() {
	if e.ra != nil {
		e.ra.stop()
	}
}

// stop ends the read-ahead and forgets what it read.
func (ra *readAhead) stop() {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	ra.stopped = true
	ra.slots = nil
	ra.cond.Broadcast()
}
