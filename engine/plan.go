package engine

import (
	"fmt"
	"io"
	"maps"
	"slices"
)

// A plan is what a commit writes: values, in the order they go into the
// segment, and the states they make.
type plan struct {
	id         uint64 // the snapshot the commit makes
	values     []value
	states     []planned
	compacting bool
}

// value is one entry of the new segment: bytes to write, or a stored
// value to copy from another segment.
type value struct {
	name string
	wt   io.WriterTo
	from *Loc
}

// planned is a state the commit writes, from its write or, carried by a
// compaction, as the current snapshot has it. Its values are
// values[first:first+base+deltas]: the value, or the map's base parts,
// then its deltas. Its locations are filled in from the entries the
// segment ends up with.
type planned struct {
	w           *Write // nil: carried as it is
	prev        *Ref   // the state in the current snapshot, for a delta or one carried
	first       int
	base, delta int
	add         bool // a delta appended to the chain prev has
}

// plan checks writes and drops against the current snapshot and lays out
// the segment. With compaction due, every other state is carried into it,
// and so is the chain of a map written as a delta (else the delta's
// chain would keep the old, mostly dead, segments alive). A state costs
// the plan no copy of its Ref unless it is a map's delta or carried.
// Call with e.mu held.
func (e *Engine) plan(id uint64, writes []Write, drops []string) (*plan, error) {
	p := &plan{id: id, values: make([]value, 0, len(writes)), states: make([]planned, 0, len(writes))}
	seen := make(map[string]bool, len(writes)+len(drops))
	for i := range writes {
		w := &writes[i]
		if seen[w.Name] {
			return nil, fmt.Errorf("instadump: state %q written twice in one commit", w.Name)
		}
		seen[w.Name] = true
		prev, had := e.cur[w.Name]
		switch {
		case w.Kind != ValueState && w.Kind != MapState:
			return nil, fmt.Errorf("instadump: state %q written with kind %d", w.Name, w.Kind)
		case (w.Kind == ValueState || w.Delta) && len(w.Parts) != 1, len(w.Parts) == 0:
			return nil, fmt.Errorf("instadump: state %q written in %d parts", w.Name, len(w.Parts))
		case w.Delta && (!had || prev.Kind != MapState):
			return nil, fmt.Errorf("instadump: a delta for state %q, which the current snapshot does not hold as a map", w.Name)
		}
		ps := planned{w: w, first: len(p.values)}
		if w.Delta {
			prev := prev // on the heap for a delta alone
			ps.prev = &prev
			if e.compact { // the chain moves into the fresh segment too
				ps.base = p.carry(prev.Base)
				ps.delta = p.carry(prev.Deltas)
			} else {
				ps.add = true
			}
		}
		for i, part := range w.Parts {
			n := entryName(w.Name, w.Kind, w.Delta, i, id)
			p.values = append(p.values, value{name: n, wt: part})
			if w.Delta {
				ps.delta++
			} else {
				ps.base++
			}
		}
		p.states = append(p.states, ps)
	}
	for _, n := range drops {
		if _, ok := e.cur[n]; !ok || seen[n] {
			return nil, fmt.Errorf("instadump: cannot drop state %q: the current snapshot does not hold it, or the commit writes it", n)
		}
		seen[n] = true
	}
	if !e.compact {
		return p, nil
	}
	p.compacting = true
	for _, name := range slices.Sorted(maps.Keys(e.cur)) {
		if seen[name] {
			continue
		}
		prev := e.cur[name]
		ps := planned{prev: &prev, first: len(p.values)}
		if prev.Kind == ValueState {
			p.values = append(p.values, value{name: name, from: &prev.Value})
			ps.base = 1
		}
		ps.base += p.carry(prev.Base)
		ps.delta = p.carry(prev.Deltas)
		p.states = append(p.states, ps)
	}
	e.log.Info("instadump: compacting: rewriting every live value into one segment", "snapshot", id, "values", len(p.values))
	return p, nil
}

// carry adds the stored values locs to the segment, copied as they are,
// and returns how many.
func (p *plan) carry(locs []Loc) int {
	for i := range locs {
		p.values = append(p.values, value{name: locs[i].Name, from: &locs[i]})
	}
	return len(locs)
}

// refs returns the states the plan makes, located in segment r, by name.
func (p *plan) refs(r *segReader) []Ref {
	at := func(name string) Loc {
		if r == nil { // a commit of drops alone locates nothing
			return Loc{}
		}
		en, ok := r.Find(name) // r holds every value of the plan: it was read back
		if !ok {
			return Loc{}
		}
		return Loc{Segment: r.ID(), Name: en.Name, Offset: en.Offset, StoredLen: en.StoredLen, RawLen: en.RawLen, StoredSum: en.StoredSum, RawSum: en.RawSum}
	}
	located := func(vals []value) []Loc {
		if len(vals) == 0 {
			return nil
		}
		out := make([]Loc, len(vals))
		for i := range vals {
			out[i] = at(vals[i].name)
		}
		return out
	}
	out := make([]Ref, 0, len(p.states))
	for _, ps := range p.states {
		var ref Ref
		if w := ps.w; w != nil {
			ref = Ref{Name: w.Name, Kind: w.Kind, Entries: w.Entries, Since: p.id, Schema: w.Schema}
		} else {
			ref = *ps.prev
		}
		vals := p.values[ps.first : ps.first+ps.base+ps.delta]
		switch {
		case ref.Kind == ValueState:
			ref.Value = at(vals[0].name)
		case ps.add:
			ref.Base = ps.prev.Base
			ref.Deltas = append(slices.Clip(ps.prev.Deltas), at(vals[0].name))
		default:
			ref.Base, ref.Deltas = located(vals[:ps.base]), located(vals[ps.base:])
		}
		out = append(out, ref)
	}
	sortRefs(out)
	return out
}
