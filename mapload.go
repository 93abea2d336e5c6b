package instadump

import (
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"sync"

	"github.com/instadump/instadump/engine"
	"github.com/instadump/instadump/internal/codec"
	"github.com/instadump/instadump/internal/par"
)

// mapLoaded is a Map's content decoded from a snapshot, not installed yet.
type mapLoaded[K comparable, V any] struct {
	shards [mapShards]map[K]V
	count  int64
}

// load decodes the map of a snapshot: the base's parts on every core,
// each into the shards its keys belong to, then the deltas in order.
func (m *Map[K, V]) load(eng *engine.Engine, ref engine.Ref) (any, error) {
	if ref.Kind != engine.MapState {
		return nil, &DecodeError{State: m.name, Stored: ref.Kind.String(), Wanted: reflect.TypeFor[Map[K, V]]().String(), Map: true,
			Err: errors.New("it was saved with NewState, not NewMap"), todo: "register it with NewState, or Drop it"}
	}
	out := &mapLoaded[K, V]{}
	var locks [mapShards]sync.Mutex
	err := par.Each(len(ref.Base), runtime.GOMAXPROCS(0), func(p int) error {
		return m.loadPart(eng, ref.Base[p], out, &locks)
	})
	if err != nil {
		return nil, m.partsError(err)
	}
	for _, l := range ref.Deltas {
		if err := m.loadDelta(eng, l, out); err != nil {
			return nil, err
		}
	}
	for _, sm := range out.shards {
		out.count += int64(len(sm))
	}
	if out.count != ref.Entries {
		last := ref.Base[len(ref.Base)-1]
		if len(ref.Deltas) > 0 {
			last = ref.Deltas[len(ref.Deltas)-1]
		}
		return nil, &CorruptError{File: eng.FileOf(last), Offset: last.Offset,
			Reason: fmt.Sprintf("map %s holds %d entries, but the manifest says %d", quote(m.name), out.count, ref.Entries)}
	}
	return out, nil
}

// partsError is the error of loading the base's parts, err from
// par.Each. A panic of loadPart itself (par.Each returns its
// *par.PanicError as is) is not the snapshot's doing: decoding errors are
// returned, not panicked, and a damaged chunk is reported by the read as
// corruption (wrapping the decompressor's panic), which stays what it
// is. So that panic is reported as an internal error of the map, neither
// a type mismatch nor damage, and the files are left alone.
func (m *Map[K, V]) partsError(err error) error {
	if pe, ok := err.(*par.PanicError); ok {
		return fmt.Errorf("instadump: loading map %s failed on an internal error, not a mismatch of its type nor damage to its files: keep the files and report this error with its stack: %w\n%s", quote(m.name), pe, pe.Stack)
	}
	return err
}

func (m *Map[K, V]) decodeError(raw []byte, what string, err error) error {
	err = decodeError(m.name, raw, fmt.Sprintf("%s of %s", what, reflect.TypeFor[map[K]V]()), err)
	if de, ok := err.(*DecodeError); ok {
		de.Map = true
	}
	return err
}

// loadPart decodes one part of a base and adds its entries to out, each
// shard's map made at its final size.
func (m *Map[K, V]) loadPart(eng *engine.Engine, l engine.Loc, out *mapLoaded[K, V], locks *[mapShards]sync.Mutex) error {
	raw, err := eng.Read(l)
	if err != nil {
		return err
	}
	ir := newItemReader(raw)
	n, err := ir.mapLen()
	if err != nil {
		return m.decodeError(raw, "a base part", err)
	}
	keys, vals := make([]K, n), make([]V, n) // n is bounded by the bytes read
	if err := readPairs(ir, m.pc, keys, vals); err != nil {
		return m.decodeError(raw, "a base part", err)
	}
	if err := ir.end(); err != nil {
		return m.decodeError(raw, "a base part", err)
	}
	var counts [mapShards]int32
	shardOf := make([]uint16, n)
	for i := range keys {
		s := m.shardOf(keys[i])
		shardOf[i] = uint16(s)
		counts[s]++
	}
	for s, c := range counts {
		if c == 0 {
			continue
		}
		locks[s].Lock()
		if out.shards[s] == nil {
			out.shards[s] = make(map[K]V, c)
		}
		for i := range keys {
			if int(shardOf[i]) == s {
				out.shards[s][keys[i]] = vals[i]
			}
		}
		locks[s].Unlock()
	}
	return nil
}

// loadDelta applies one delta to out.
func (m *Map[K, V]) loadDelta(eng *engine.Engine, l engine.Loc, out *mapLoaded[K, V]) error {
	raw, err := eng.Read(l)
	if err != nil {
		return err
	}
	err = func() error {
		ir := newItemReader(raw)
		if n, err := ir.arrayLen(); err != nil || n != 2 {
			return fmt.Errorf("%w: a delta is an array of two (%v)", codec.ErrMismatch, err)
		}
		n, err := ir.mapLen()
		if err != nil {
			return err
		}
		keys, vals := make([]K, n), make([]V, n)
		if err := readPairs(ir, m.pc, keys, vals); err != nil {
			return err
		}
		for i := range keys {
			s := m.shardOf(keys[i])
			if out.shards[s] == nil {
				out.shards[s] = map[K]V{}
			}
			out.shards[s][keys[i]] = vals[i]
		}
		if n, err = ir.arrayLen(); err != nil {
			return err
		}
		dels := make([]K, n)
		if err := readKeys(ir, m.pc, dels); err != nil {
			return err
		}
		for _, k := range dels {
			delete(out.shards[m.shardOf(k)], k)
		}
		return ir.end()
	}()
	if err != nil {
		return m.decodeError(raw, "a delta", err)
	}
	return nil
}

// install replaces the map's content with a loaded one (clean: as the
// snapshot holds it, so no delta is due), or applies a transaction's
// writes. Call with the cut lock held.
func (m *Map[K, V]) install(v any, clean bool, _ uint64) {
	switch x := v.(type) {
	case *mapTx[K, V]:
		for _, e := range x.ops {
			m.write(e.k, e.v, e.del)
		}
	case *mapLoaded[K, V]:
		for i := range m.shards {
			sh := m.shards[i].Load()
			if sh == nil {
				if x.shards[i] == nil {
					continue
				}
				sh = &shard[K, V]{}
				m.shards[i].Store(sh)
			}
			sh.mu.Lock()
			sh.settle(i) // an All running sees the map as it was
			sh.m, sh.dirty = x.shards[i], nil
			sh.mu.Unlock()
		}
		m.count.Store(x.count)
		m.changed = 0
		m.needBase = !clean
		m.db.Load().markDirty(m)
	}
}

// bind moves the map to db, as State.bind does. A map not loaded from db
// writes its whole content at the next Save.
func (m *Map[K, V]) bind(db *DB, loaded bool) {
	m.pending = nil
	m.db.Store(db)
	if db == nil {
		return
	}
	if !loaded {
		m.needBase = true
	}
	m.lk.Store(&db.locks)
}

// mapTx is a transaction's writes to one map.
type mapTx[K comparable, V any] struct {
	ops map[K]mapEntry[K, V]
}

func (m *Map[K, V]) txOf(tx *Tx, op string) *mapTx[K, V] {
	checkTx(tx, op, m.name, m.db.Load())
	if w, ok := tx.writes[m]; ok {
		return w.(*mapTx[K, V])
	}
	w := &mapTx[K, V]{ops: map[K]mapEntry[K, V]{}}
	tx.writes[m] = w
	return w
}

// GetIn returns the value under k as transaction tx sees it: what it set
// or deleted, or the current value.
func (m *Map[K, V]) GetIn(tx *Tx, k K) (V, bool) {
	if e, ok := m.txOf(tx, "GetIn").ops[k]; ok {
		return e.v, !e.del
	}
	return m.Get(k)
}

// SetIn sets the value under k in transaction tx; it takes effect when
// the transaction's function returns nil.
func (m *Map[K, V]) SetIn(tx *Tx, k K, v V) {
	m.txOf(tx, "SetIn").ops[k] = mapEntry[K, V]{k: k, v: v}
}

// DeleteIn deletes k in transaction tx; it takes effect when the
// transaction's function returns nil.
func (m *Map[K, V]) DeleteIn(tx *Tx, k K) {
	m.txOf(tx, "DeleteIn").ops[k] = mapEntry[K, V]{k: k, del: true}
}

func (m *Map[K, V]) defaultValue() any { return &mapLoaded[K, V]{} }
