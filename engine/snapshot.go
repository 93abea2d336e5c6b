package engine

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

// Ref says where one state's value lives in a snapshot, as the manifest
// records it: a value state's one value, or a map state's base parts and
// chain of deltas.
type Ref = manifest.State

// Loc locates one stored value: a value state's value, or one part or
// delta of a map state.
type Loc = manifest.Loc

// Kind says what a state is made of.
type Kind = manifest.StateKind

// The kinds of state.
const (
	ValueState = manifest.ValueState // one value
	MapState   = manifest.MapState   // a base in parts and a chain of deltas
)

// Snapshot describes a committed snapshot.
type Snapshot struct {
	ID      uint64    // 1, 2, 3, ... with no gaps
	Time    time.Time // when it was committed
	States  int       // how many states it holds
	Written int64     // bytes of the segment its commit wrote; 0 if none
}

// snap is a retained snapshot as the engine keeps it: what changed
// against the snapshot before, and what those states were there, so that
// a commit costs what it changed and any retained snapshot can be
// rebuilt from the current one. The oldest retained snapshot keeps
// neither (forget): nothing rebuilds the snapshot before it.
type snap struct {
	Snapshot
	nextSeg  uint64
	retained uint64   // the oldest snapshot retained with it
	changed  []Ref    // states written or moved, by name
	removed  []string // states dropped, sorted
	undo     []undo   // the states changed or removed, by name
	prevs    []Ref    // what the snapshot before had of them, for those it had
}

// undo is one state changed or removed by a snapshot.
type undo struct {
	name string
	prev int // its index in prevs, or -1: the snapshot before did not have it
}

// before returns how the snapshot before s had the state of u, and
// whether it had it.
func (s *snap) before(u undo) (*Ref, bool) {
	if u.prev < 0 {
		return nil, false
	}
	return &s.prevs[u.prev], true
}

// record returns the delta record of s.
func (s *snap) record() manifest.Record {
	return manifest.Record{Kind: manifest.Delta, Snapshot: s.ID, Time: s.Time, NextSegment: s.nextSeg,
		Written: s.Written, Retained: s.retained, States: s.changed, Removed: s.removed}
}

// forget drops what s changed and undoes, once s is the oldest retained
// snapshot: it is never rebuilt from the one after, nor written as a
// delta (a rollover writes it in full).
func (s *snap) forget() { s.changed, s.undo, s.prevs = nil, nil, nil }

// undoOf returns how s's predecessor had name, and whether s changed it.
func (s *snap) undoOf(name string) (undo, bool) {
	i, ok := slices.BinarySearchFunc(s.undo, name, func(u undo, n string) int { return strings.Compare(u.name, n) })
	if !ok {
		return undo{}, false
	}
	return s.undo[i], true
}

// apply changes states (the snapshot before s) into s, fills s.undo and
// returns states: the same map, or a larger copy when s changes more
// states than it holds (a first save of many states grows the map once,
// not by doubling). It calls change, if not nil, for every state s
// changes or removes, by name.
func (s *snap) apply(states map[string]Ref, change func(prev *Ref, had bool, next *Ref, has bool)) map[string]Ref {
	if len(s.changed) > len(states) {
		grown := make(map[string]Ref, len(states)+len(s.changed))
		maps.Copy(grown, states)
		states = grown
	}
	s.undo = make([]undo, 0, len(s.changed)+len(s.removed))
	s.prevs = make([]Ref, 0, min(len(states), len(s.changed))+len(s.removed)) // at most those it had
	step := func(name string, next *Ref) {
		u := undo{name: name, prev: -1}
		if prev, had := states[name]; had {
			u.prev = len(s.prevs)
			s.prevs = append(s.prevs, prev)
		}
		s.undo = append(s.undo, u)
		if next != nil {
			states[name] = *next
		} else {
			delete(states, name)
		}
		if change != nil {
			prev, had := s.before(u)
			change(prev, had, next, next != nil)
		}
	}
	// In name order: changed and removed are sorted, and disjoint.
	c, r := 0, 0
	for c < len(s.changed) || r < len(s.removed) {
		if r == len(s.removed) || c < len(s.changed) && s.changed[c].Name < s.removed[r] {
			step(s.changed[c].Name, &s.changed[c])
			c++
		} else {
			step(s.removed[r], nil)
			r++
		}
	}
	return states
}

// revert turns states (snapshot s) back into the snapshot before s.
func (s *snap) revert(states map[string]Ref) {
	for _, u := range s.undo {
		if prev, had := s.before(u); had {
			states[u.name] = *prev
		} else {
			delete(states, u.name)
		}
	}
}

// diff returns the delta from prev to next: the states of next that
// differ from prev's, and the states of prev that next lacks, by name.
func diff(prev, next map[string]Ref) (changed []Ref, removed []string) {
	for name, r := range next {
		if p, ok := prev[name]; !ok || !sameRef(&p, &r) {
			changed = append(changed, r)
		}
	}
	for name := range prev {
		if _, ok := next[name]; !ok {
			removed = append(removed, name)
		}
	}
	sortRefs(changed)
	slices.Sort(removed)
	return changed, removed
}

func sortRefs(refs []Ref) {
	slices.SortFunc(refs, func(a, b Ref) int { return strings.Compare(a.Name, b.Name) })
}

func sameRef(a, b *Ref) bool {
	return a.Name == b.Name && a.Kind == b.Kind && a.Value == b.Value && slices.Equal(a.Base, b.Base) &&
		slices.Equal(a.Deltas, b.Deltas) && a.Entries == b.Entries && a.Since == b.Since && a.Schema == b.Schema
}

// locs calls fn for every stored value r uses.
func locs(r *Ref, fn func(l *Loc)) {
	for l := range r.Locs() {
		fn(l)
	}
}

// appendLocs appends the locations of r's values to list, as locs
// visits them.
func appendLocs(list []Loc, r *Ref) []Loc {
	if r.Kind == ValueState {
		return append(list, r.Value)
	}
	list = append(list, r.Base...)
	return append(list, r.Deltas...)
}

// locSize is what a value takes in its segment: its stored bytes and its
// index entry.
func locSize(l *Loc) int64 {
	return l.StoredLen + segment.EntryHeaderSize + int64(len(l.Name))
}

// statesAt returns the states of retained snapshot i, rebuilt from the
// current ones. Call with e.mu held.
func (e *Engine) statesAt(i int) map[string]Ref {
	states := maps.Clone(e.cur)
	for k := len(e.snaps) - 1; k > i; k-- {
		e.snaps[k].revert(states)
	}
	return states
}

// retainedSegments returns the segments some retained snapshot uses, in
// order, without rebuilding each snapshot's states: a state of an older
// snapshot is either current or what a later snapshot replaced or
// removed (its undo entry). Call with e.mu held.
func (e *Engine) retainedSegments() []uint64 {
	used := map[uint64]bool{}
	add := func(l *Loc) { used[l.Segment] = true }
	for _, r := range e.cur {
		locs(&r, add)
	}
	for _, s := range e.snaps[min(1, len(e.snaps)):] {
		for i := range s.prevs {
			locs(&s.prevs[i], add)
		}
	}
	return slices.Sorted(maps.Keys(used))
}

// refsAt returns the states of retained snapshot i sorted by name, in a
// slice of their number; the current snapshot's without a copy of its
// map. Call with e.mu held.
func (e *Engine) refsAt(i int) []Ref {
	states := e.cur
	if i < len(e.snaps)-1 {
		states = e.statesAt(i)
	}
	refs := make([]Ref, 0, len(states))
	for _, r := range states {
		refs = append(refs, r)
	}
	sortRefs(refs)
	return refs
}

// lookupAt returns state name in retained snapshot i. Call with e.mu
// held.
func (e *Engine) lookupAt(i int, name string) (Ref, bool) {
	r, ok := e.cur[name]
	for k := len(e.snaps) - 1; k > i; k-- {
		if u, changed := e.snaps[k].undoOf(name); changed {
			var prev *Ref
			prev, ok = e.snaps[k].before(u)
			r = Ref{}
			if ok {
				r = *prev
			}
		}
	}
	return r, ok
}

// index returns the position of snapshot id among the retained ones (0:
// the current one), or -1. Call with e.mu held.
func (e *Engine) index(id uint64) int {
	if len(e.snaps) == 0 {
		return -1
	}
	if id == 0 {
		return len(e.snaps) - 1
	}
	first := e.snaps[0].ID
	if id < first || id > e.snaps[len(e.snaps)-1].ID {
		return -1
	}
	return int(id - first) // IDs have no gaps
}

// Current returns the current snapshot, or false if there is none.
func (e *Engine) Current() (Snapshot, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.snaps) == 0 {
		return Snapshot{}, false
	}
	return e.snaps[len(e.snaps)-1].Snapshot, true
}

// Snapshots returns the retained snapshots, oldest first.
func (e *Engine) Snapshots() []Snapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Snapshot, len(e.snaps))
	for i, s := range e.snaps {
		out[i] = s.Snapshot
	}
	return out
}

// Snapshot returns retained snapshot id (0: the current one).
func (e *Engine) Snapshot(id uint64) (Snapshot, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i := e.index(id); i >= 0 {
		return e.snaps[i].Snapshot, true
	}
	return Snapshot{}, false
}

// Lookup returns where state name lives in retained snapshot id (0: the
// current one). It is false if the snapshot is not retained or has no
// such state.
func (e *Engine) Lookup(id uint64, name string) (Ref, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	i := e.index(id)
	if i < 0 {
		return Ref{}, false
	}
	return e.lookupAt(i, name)
}

// States returns every state of retained snapshot id (0: the current
// one), or false if it is not retained. It costs the number of states.
func (e *Engine) States(id uint64) (map[string]Ref, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	i := e.index(id)
	if i < 0 {
		return nil, false
	}
	return e.statesAt(i), true
}
