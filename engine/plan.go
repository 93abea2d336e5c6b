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

// planned is a state the commit writes: its Ref, whose locations are
// filled in from the entries the segment ends up with.
type planned struct {
	ref    Ref
	base   []string // entries of the value, or of the map's base parts
	deltas []string // entries of the map's deltas: all of them, or with add the new one
	add    bool     // a delta appended to the chain ref already has
}

// plan checks writes and drops against the current snapshot and lays out
// the segment. With compaction due, every other state is carried into it,
// and so is the chain of a map written as a delta (else the delta's
// chain would keep the old, mostly dead, segments alive).
// Call with e.mu held.
func (e *Engine) plan(id uint64, writes []Write, drops []string) (*plan, error) {
	p := &plan{values: make([]value, 0, len(writes)), states: make([]planned, 0, len(writes))}
	seen := make(map[string]bool, len(writes)+len(drops))
	entry := func(names *[]string, n string, v value) {
		*names = append(*names, n)
		p.values = append(p.values, v)
	}
	for _, w := range writes {
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
		ps := planned{ref: Ref{Name: w.Name, Kind: w.Kind, Entries: w.Entries, Since: id, Schema: w.Schema}}
		if w.Delta && e.compact { // the chain moves into the fresh segment too
			for i := range prev.Base {
				entry(&ps.base, prev.Base[i].Name, value{name: prev.Base[i].Name, from: &prev.Base[i]})
			}
			for i := range prev.Deltas {
				entry(&ps.deltas, prev.Deltas[i].Name, value{name: prev.Deltas[i].Name, from: &prev.Deltas[i]})
			}
		}
		for i, part := range w.Parts {
			n := entryName(w.Name, w.Kind, w.Delta, i, id)
			if w.Delta {
				if !e.compact {
					ps.ref.Base, ps.ref.Deltas, ps.add = prev.Base, prev.Deltas, true
				}
				entry(&ps.deltas, n, value{name: n, wt: part})
			} else {
				entry(&ps.base, n, value{name: n, wt: part})
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
		ps := planned{ref: e.cur[name]}
		if ps.ref.Kind == ValueState {
			entry(&ps.base, name, value{name: name, from: &ps.ref.Value})
		}
		for i := range ps.ref.Base {
			l := &ps.ref.Base[i]
			entry(&ps.base, l.Name, value{name: l.Name, from: l})
		}
		for i := range ps.ref.Deltas {
			l := &ps.ref.Deltas[i]
			entry(&ps.deltas, l.Name, value{name: l.Name, from: l})
		}
		p.states = append(p.states, ps)
	}
	e.log.Info("instadump: compacting: rewriting every live value into one segment", "snapshot", id, "values", len(p.values))
	return p, nil
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
	located := func(names []string) []Loc {
		out := make([]Loc, len(names))
		for i, n := range names {
			out[i] = at(n)
		}
		return out
	}
	out := make([]Ref, 0, len(p.states))
	for _, ps := range p.states {
		ref := ps.ref
		switch {
		case ref.Kind == ValueState:
			ref.Value = at(ps.base[0])
		case ps.add:
			ref.Deltas = append(slices.Clip(ref.Deltas), located(ps.deltas)...)
		default:
			ref.Base, ref.Deltas = located(ps.base), nil
			if len(ps.deltas) > 0 {
				ref.Deltas = located(ps.deltas)
			}
		}
		out = append(out, ref)
	}
	sortRefs(out)
	return out
}
