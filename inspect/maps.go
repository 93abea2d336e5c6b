package inspect

import (
	"fmt"

	"github.com/instadump/instadump/engine"
)

// A Map state is a base, in parts, and a chain of deltas. A base part is
// a msgpack map of entries; a delta is a msgpack array of two: a map of
// the keys set, and an array of the keys deleted (see package
// instadump's doc).

// mapEntries returns the entries of map state r, its base and deltas
// merged, as spans of the bytes read.
func (d *DB) mapEntries(r engine.Ref) ([]entry, error) {
	index := map[string]int{} // raw key → position in entries
	var entries []entry
	set := func(k, v []byte) {
		if i, ok := index[string(k)]; ok {
			entries[i].val = v
			return
		}
		index[string(k)] = len(entries)
		entries = append(entries, entry{key: k, val: v})
	}
	for _, l := range r.Base {
		raw, err := d.eng.Read(l)
		if err != nil {
			return nil, err
		}
		if err := eachEntry(&reader{b: raw}, set); err != nil {
			return nil, fmt.Errorf("base part %q: %w", l.Name, err)
		}
	}
	deleted := map[string]bool{}
	for _, l := range r.Deltas {
		raw, err := d.eng.Read(l)
		if err != nil {
			return nil, err
		}
		err = eachDelta(raw, func(k, v []byte) {
			delete(deleted, string(k))
			set(k, v)
		}, func(k []byte) { deleted[string(k)] = true })
		if err != nil {
			return nil, fmt.Errorf("delta %q: %w", l.Name, err)
		}
	}
	if len(deleted) > 0 {
		kept := entries[:0]
		for _, e := range entries {
			if !deleted[string(e.key)] {
				kept = append(kept, e)
			}
		}
		entries = kept
	}
	return entries, nil
}

// eachEntry calls fn for every entry of the msgpack map at r, with the
// spans of its key and value.
func eachEntry(r *reader, fn func(k, v []byte)) error {
	n, err := r.container(kMap, "a map was expected")
	if err != nil {
		return err
	}
	var k []byte
	return r.spans(2*n, func(i uint64, b []byte) {
		if i%2 == 0 {
			k = b
		} else {
			fn(k, b)
		}
	})
}

// eachDelta calls set for every key a delta sets and del for every key it
// deletes.
func eachDelta(raw []byte, set func(k, v []byte), del func(k []byte)) error {
	r := &reader{b: raw}
	const notDelta = "a delta is an array of two"
	n, err := r.container(kArray, notDelta)
	if err == nil && n != 2 {
		err = r.fail(notDelta)
	}
	if err == nil {
		err = eachEntry(r, set)
	}
	if err == nil {
		n, err = r.container(kArray, "an array of deleted keys was expected")
	}
	if err != nil {
		return err
	}
	if err := r.spans(n, func(_ uint64, k []byte) { del(k) }); err != nil {
		return err
	}
	if r.pos != len(raw) {
		return r.fail("%d bytes after the delta", len(raw)-r.pos)
	}
	return nil
}

// lookupKey returns the value bytes under key in map state r, or in the
// map a value state holds, reading no more than it must: a Map's deltas
// newest first, then its base.
func (d *DB) lookupKey(r engine.Ref, key string) ([]byte, error) {
	matches := func(k []byte) bool {
		t, err := keyText(k)
		return err == nil && t == key
	}
	find := func(raw []byte) ([]byte, error) {
		var found []byte
		err := eachEntry(&reader{b: raw}, func(k, v []byte) {
			if found == nil && matches(k) {
				found = v
			}
		})
		return found, err
	}
	if r.Kind == engine.ValueState {
		raw, err := d.eng.Read(r.Value)
		if err != nil {
			return nil, err
		}
		v, err := find(raw)
		if err == nil && v == nil {
			err = fmt.Errorf("%w: %q", ErrNoKey, key)
		}
		return v, err
	}
	for i := len(r.Deltas) - 1; i >= 0; i-- {
		raw, err := d.eng.Read(r.Deltas[i])
		if err != nil {
			return nil, err
		}
		var found []byte
		gone := false
		err = eachDelta(raw, func(k, v []byte) {
			if found == nil && matches(k) {
				found = v
			}
		}, func(k []byte) { gone = gone || matches(k) })
		if err != nil {
			return nil, err
		}
		if found != nil {
			return found, nil
		}
		if gone {
			return nil, fmt.Errorf("%w: %q (deleted)", ErrNoKey, key)
		}
	}
	for _, l := range r.Base {
		raw, err := d.eng.Read(l)
		if err != nil {
			return nil, err
		}
		if v, err := find(raw); err != nil || v != nil {
			return v, err
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrNoKey, key)
}
