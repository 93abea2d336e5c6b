package instadump

import (
	"io"

	"github.com/instadump/instadump/engine"
)

// How a Map is saved. A base is the whole map cut into parts by ranges of
// shards, each part a msgpack map of its entries; a delta is a msgpack
// array of two: a map of the keys set since the previous snapshot, and an
// array of the keys deleted. A load reads the base's parts on every core,
// then applies the deltas in order.

// maxDeltas bounds a Map's chain; past it, or once the deltas hold more
// than 1/chainShare of the base's bytes, a Save rewrites the base. The
// base loads on every core, the deltas one after another: at a quarter,
// the longest chain loaded in 1.76 times the base's own time (bench D);
// at an eighth it stays near 1.3.
const (
	maxDeltas  = 64
	chainShare = 8
)

// baseEntriesPerPart is about how many entries a part of a base holds.
const baseEntriesPerPart = 1 << 16

// chainTooLong says whether the map on disk should get a new base.
func chainTooLong(r engine.Ref) bool {
	var base, deltas int64
	for _, l := range r.Base {
		base += l.RawLen
	}
	for _, l := range r.Deltas {
		deltas += l.RawLen
	}
	return len(r.Deltas) >= maxDeltas || chainShare*deltas > base
}

func (m *Map[K, V]) memberName() string   { return m.name }
func (m *Map[K, V]) dirty() bool          { return m.changed > 0 || m.needBase }
func (m *Map[K, V]) changedInPlace() bool { return false }

// capture cuts what a Save writes for the map: its changed keys, or the
// whole map when it has no base on disk yet or its chain is too long.
// Call with the cut lock held.
func (m *Map[K, V]) capture(eng *engine.Engine, w *engine.Write) *capture {
	if !m.dirty() {
		return nil
	}
	cur, has := eng.Lookup(0, m.name)
	full := m.needBase || !has || cur.Kind != engine.MapState || chainTooLong(cur)
	f := m.cut(full, true)
	m.changed, m.needBase, m.pending = 0, false, f
	*w = engine.Write{Name: m.name, Kind: engine.MapState, Delta: !full, Entries: f.count}
	c := &capture{extra: f}
	if !full {
		c.jobs = []*job{newJob(m.name, func(w io.Writer) error { return m.writeDelta(w, f) })}
		return c
	}
	parts := int(min(max(f.count/baseEntriesPerPart, 1), 64))
	for p := range parts {
		lo, hi := p*mapShards/parts, (p+1)*mapShards/parts
		c.jobs = append(c.jobs, newJob(m.name, func(w io.Writer) error { return m.writePart(w, f, lo, hi) }))
	}
	return c
}

// writePart writes the base part holding shards [lo, hi) of f.
func (m *Map[K, V]) writePart(w io.Writer, f *freeze[K, V], lo, hi int) error {
	n := 0
	for i := lo; i < hi; i++ {
		f.got[i] = m.take(f, i)
		n += len(f.got[i].keys)
	}
	iw := newItemWriter(w)
	err := iw.mapLen(n)
	for i := lo; i < hi && err == nil; i++ {
		if err = m.keysLoadBack(f.got[i].keys); err == nil {
			err = writePairs(iw, m.pc, f.got[i].keys, f.got[i].vals)
		}
		f.got[i] = shardCopy[K, V]{}
	}
	if cerr := iw.close(); err == nil {
		err = cerr
	}
	return err
}

// writeDelta writes the delta of f: the keys set, then the keys deleted.
func (m *Map[K, V]) writeDelta(w io.Writer, f *freeze[K, V]) error {
	sets, dels := 0, 0
	for i := range m.shards {
		f.got[i] = m.take(f, i)
		if err := m.writableDeletes(f, f.got[i].dels); err != nil {
			return err
		}
		sets += len(f.got[i].keys)
		dels += len(f.got[i].dels)
	}
	iw := newItemWriter(w)
	err := iw.arrayLen(2)
	if err == nil {
		err = iw.mapLen(sets)
	}
	for i := 0; i < len(m.shards) && err == nil; i++ {
		if err = m.keysLoadBack(f.got[i].keys); err == nil {
			err = writePairs(iw, m.pc, f.got[i].keys, f.got[i].vals)
		}
	}
	if err == nil {
		err = iw.arrayLen(dels)
	}
	for i := 0; i < len(m.shards) && err == nil; i++ {
		err = writeKeys(iw, m.pc, f.got[i].dels)
		f.got[i] = shardCopy[K, V]{}
	}
	if cerr := iw.close(); err == nil {
		err = cerr
	}
	return err
}

// settle ends a Save's capture: committed, the map on disk is what was
// cut; not, the keys it cut are changed again, and a base it meant to
// write is still due. Call with the cut lock held.
func (m *Map[K, V]) settle(c *capture, committed bool) {
	f := c.extra.(*freeze[K, V])
	m.release(f)
	if m.pending == f {
		m.pending = nil
	}
	if committed {
		return
	}
	if f.rebase.Load() {
		m.needBase = true // and the keys changed stay dirty, below
	}
	if f.full {
		m.needBase = true
		return
	}
	for i := range m.shards {
		if len(f.keys[i]) == 0 {
			continue
		}
		sh := m.shards[i].Load()
		sh.mu.Lock()
		if sh.dirty == nil {
			sh.dirty = map[K]struct{}{}
		}
		for k := range f.keys[i] {
			if _, ok := sh.dirty[k]; !ok {
				sh.dirty[k] = struct{}{}
				m.changed++
			}
		}
		sh.mu.Unlock()
	}
}
