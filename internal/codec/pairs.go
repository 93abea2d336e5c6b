package codec

import (
	"unsafe"
)

// Pairs encodes and decodes runs of keys and values as they stand in the
// body of a msgpack map (k0 v0 k1 v1 ...), or keys alone as they stand
// in the body of an array, with the compiled codecs of K and V: one call
// for a whole run, not one a value, for callers that keep map entries
// apart (instadump's Map). It is safe for concurrent use.
type Pairs[K, V any] struct {
	k, v *codec
}

// ForPairs returns the pair codec of K and V, compiled on first use. It
// fails (with Check's error) if values of K or V cannot be saved and
// loaded.
func ForPairs[K, V any]() (*Pairs[K, V], error) {
	k, err := For[K]()
	if err != nil {
		return nil, err
	}
	v, err := For[V]()
	if err != nil {
		return nil, err
	}
	return &Pairs[K, V]{k: k.c, v: v.c}, nil
}

// Append appends keys[i] then vals[i], for each i, to dst: the bytes
// msgpack/v5 writes for them one after the other. keys and vals have the
// same length. On error it returns dst as it was and an *Error.
func (p *Pairs[K, V]) Append(dst []byte, keys []K, vals []V) ([]byte, error) {
	return p.append(dst, keys, vals, true)
}

// AppendKeys appends keys, one after the other, to dst.
func (p *Pairs[K, V]) AppendKeys(dst []byte, keys []K) ([]byte, error) {
	return p.append(dst, keys, nil, false)
}

// Decode decodes len(keys) pairs from the start of data into keys and
// vals (of the same length), as Codec.Decode decodes each, and returns
// the bytes they took. Bytes after them are left for the caller.
func (p *Pairs[K, V]) Decode(data []byte, keys []K, vals []V) (int, error) {
	return p.decode(data, keys, vals, true)
}

// DecodeKeys decodes len(keys) keys from the start of data and returns
// the bytes they took.
func (p *Pairs[K, V]) DecodeKeys(data []byte, keys []K) (int, error) {
	return p.decode(data, keys, nil, false)
}

// append appends keys, and vals if withVals, to dst as Append does.
func (p *Pairs[K, V]) append(dst []byte, keys []K, vals []V, withVals bool) ([]byte, error) {
	e := &encoder{buf: dst, par: true}
	err := run(func() error { return eachPair(e, p.k.enc, p.v.enc, keys, vals, withVals) }, -1)
	if err != nil {
		return dst, err
	}
	return e.buf, nil
}

// decode decodes keys, and vals if withVals, from data as Decode does.
func (p *Pairs[K, V]) decode(data []byte, keys []K, vals []V, withVals bool) (int, error) {
	d := &decoder{data: data, par: true}
	err := run(func() error { return eachPair(d, p.k.dec, p.v.dec, keys, vals, withVals) }, 0)
	return d.pos, err
}

// eachPair calls key on each of keys, then, if withVals, val on vals[i]
// (encoding or decoding them with s), until one fails.
func eachPair[S, K, V any](s S, key, val func(S, unsafe.Pointer) error, keys []K, vals []V, withVals bool) error {
	for i := range keys {
		if err := key(s, unsafe.Pointer(&keys[i])); err != nil {
			return at(err, "[key]")
		}
		if !withVals {
			continue
		}
		if err := val(s, unsafe.Pointer(&vals[i])); err != nil {
			return at(err, "[]")
		}
	}
	return nil
}
