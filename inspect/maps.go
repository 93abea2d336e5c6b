package inspect

import (
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"strings"

	"github.com/instadump/instadump/engine"
)

// A Map state is a base, in parts, and a chain of deltas. A base part is
// a msgpack map of entries; a delta is a msgpack array of two: a map of
// the keys set, and an array of the keys deleted (see package
// instadump's doc).

// eachMapEntry calls fn for every entry of map state r, its base and
// deltas merged, holding one base part at a time: the chain's keys are
// read first (a chain is small next to its base), then each base part's
// entries the chain does not replace or delete, then the chain's own.
// It stops at fn's first error.
func (d *DB) eachMapEntry(r engine.Ref, fn func(k, v []byte) error) error {
	chain := map[string][]byte{} // key → its last value in the chain; nil: deleted
	var order [][]byte           // the chain's keys, as first met
	note := func(k, v []byte) {
		if _, ok := chain[string(k)]; !ok {
			order = append(order, k)
		}
		chain[string(k)] = v
	}
	for _, l := range r.Deltas {
		raw, err := d.eng.Read(l)
		if err != nil {
			return err
		}
		if err := eachDelta(raw, note, func(k []byte) { note(k, nil) }); err != nil {
			return fmt.Errorf("delta %q: %w", l.Name, err)
		}
	}
	var fnErr error
	for _, l := range r.Base {
		raw, err := d.eng.Read(l)
		if err != nil {
			return err
		}
		err = eachEntry(&reader{b: raw}, func(k, v []byte) {
			if _, replaced := chain[string(k)]; !replaced && fnErr == nil {
				fnErr = fn(k, v)
			}
		})
		if err != nil {
			return fmt.Errorf("base part %q: %w", l.Name, err)
		}
		if fnErr != nil {
			return fnErr
		}
	}
	for _, k := range order {
		if v := chain[string(k)]; v != nil {
			if err := fn(k, v); err != nil {
				return err
			}
		}
	}
	return nil
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
// newest first, then its base. key is first taken as a key's text as it
// is; only if no key has (or had) that text, as the key it spells in
// JSON (keyJSON).
func (d *DB) lookupKey(r engine.Ref, name, key string) ([]byte, error) {
	v, gone, err := d.lookupText(r, name, key)
	if alt := keyJSON(key); err == nil && v == nil && !gone && alt != "" && alt != key {
		v, gone, err = d.lookupText(r, name, alt)
	}
	switch {
	case err != nil || v != nil:
		return v, err
	case gone:
		return nil, fmt.Errorf("%w: %q (deleted)", ErrNoKey, key)
	}
	return nil, fmt.Errorf("%w: %q", ErrNoKey, key)
}

// lookupText returns the value bytes under the key whose text (keyText)
// is text, or whether the newest delta that names it deletes it.
func (d *DB) lookupText(r engine.Ref, name, text string) (val []byte, deleted bool, err error) {
	matches := func(k []byte) bool {
		t, err := keyText(k, 0)
		return err == nil && t == text
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
			return nil, false, err
		}
		if it, herr := (&reader{b: raw}).head(); herr == nil && it.k != kMap {
			return nil, false, fmt.Errorf("%w: state %q holds %s: --key applies only to a Map (or a value that is a map); get the whole value without --key", ErrNotMap, name, kindName(it.k))
		}
		v, err := find(raw)
		return v, false, err
	}
	for i := len(r.Deltas) - 1; i >= 0; i-- {
		raw, err := d.eng.Read(r.Deltas[i])
		if err != nil {
			return nil, false, err
		}
		var found []byte
		gone := false
		err = eachDelta(raw, func(k, v []byte) {
			if found == nil && matches(k) {
				found = v
			}
		}, func(k []byte) { gone = gone || matches(k) })
		if err != nil || found != nil || gone {
			return found, found == nil && gone, err
		}
	}
	for _, l := range r.Base {
		raw, err := d.eng.Read(l)
		if err != nil {
			return nil, false, err
		}
		if v, err := find(raw); err != nil || v != nil {
			return v, false, err
		}
	}
	return nil, false, nil
}

// kindName names a msgpack kind, with its article, for messages.
func kindName(k kind) string {
	switch k {
	case kNil:
		return "nil"
	case kBool:
		return "a boolean"
	case kInt, kUint:
		return "an integer"
	case kFloat:
		return "a float"
	case kStr:
		return "a string"
	case kBin:
		return "binary"
	case kArray:
		return "an array"
	case kMap:
		return "a map"
	}
	return "a msgpack extension (a time, say)"
}

// keyJSON returns key, given as JSON, in the form keyText gives a stored
// key: a JSON string as the string it holds; anything else compact, with
// object members sorted by name and numbers as canonNumbers writes them.
// It is "" if key is not one JSON value.
func keyJSON(key string) string {
	dec := json.NewDecoder(strings.NewReader(key))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return ""
	}
	if _, err := dec.Token(); err != io.EOF {
		return "" // more after the value
	}
	if s, ok := v.(string); ok {
		return s
	}
	v = canonNumbers(v)
	b, err := json.Marshal(v) // escaping as jsonWriter.str does
	if err != nil {
		return ""
	}
	return string(b)
}

// canonNumbers rewrites the numbers in v, decoded with UseNumber, as
// keyText writes stored ones: an integer (100 for 1e2, 100.0 or 100; 0
// for -0) in decimal, another number as its shortest float64 form.
func canonNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		r, ok := new(big.Rat).SetString(string(x))
		if !ok {
			return x
		}
		if n := r.Num(); r.IsInt() && (n.IsInt64() || n.IsUint64()) {
			return json.Number(n.String())
		}
		if f, err := strconv.ParseFloat(string(x), 64); err == nil {
			return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
		}
	case []any:
		for i := range x {
			x[i] = canonNumbers(x[i])
		}
	case map[string]any:
		for k, e := range x {
			x[k] = canonNumbers(e)
		}
	}
	return v
}
