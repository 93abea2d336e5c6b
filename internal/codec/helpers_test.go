package codec

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// v5Marshal encodes *v with a default msgpack/v5 Encoder, as instadump
// does (through a pointer, so the value is addressable).
func v5Marshal(tb testing.TB, v any) []byte {
	tb.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	if err := enc.Encode(v); err != nil {
		tb.Fatalf("msgpack/v5 encode %T: %v", v, err)
	}
	return buf.Bytes()
}

// same requires the codec to write msgpack/v5's bytes for v (whose maps
// must have at most one entry) and both decoders to give the same value
// from them.
func same[T any](t *testing.T, v T) {
	t.Helper()
	c, err := For[T]()
	if err != nil {
		t.Fatalf("For[%T]: %v", v, err)
	}
	want := v5Marshal(t, &v)
	got, err := c.Append(nil, &v)
	if err != nil {
		t.Fatalf("Append(%T %#v): %v", v, v, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Append(%T %#v):\n got %s\nwant %s", v, v, hex.EncodeToString(got), hex.EncodeToString(want))
	}
	var buf bytes.Buffer
	if err := c.Encode(&buf, &v); err != nil || !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("Encode(%T): %v, %x", v, err, buf.Bytes())
	}
	var fromV5, fromCodec T
	if err := msgpack.Unmarshal(want, &fromV5); err != nil {
		if c.Decode(want, &fromCodec) == nil {
			t.Fatalf("msgpack/v5 Unmarshal %T: %v; the codec decodes it", v, err)
		}
		return
	}
	if err := c.Decode(want, &fromCodec); err != nil {
		t.Fatalf("Decode(%x) into %T: %v", want, v, err)
	}
	if !deepEqual(fromCodec, fromV5) {
		t.Fatalf("Decode(%x) into %T:\n got %#v\nwant %#v", want, v, fromCodec, fromV5)
	}
	// (A CustomEncoder may write several values: no Skip then.)
	if n, err := Skip(want); delimited(reflect.TypeFor[T]()) && (err != nil || n != len(want)) {
		t.Fatalf("Skip(%x) = %d, %v", want, n, err)
	}
}

// decodeErr decodes data into a new T and requires an error of kind.
func decodeErr[T any](t *testing.T, data []byte, kind error) *Error {
	t.Helper()
	c, err := For[T]()
	if err != nil {
		t.Fatal(err)
	}
	var v T
	err = c.Decode(data, &v)
	match := errors.Is(err, kind)
	if m, ok := kindMatchers[kind]; ok {
		match = m(err)
	}
	if !match {
		t.Fatalf("Decode(%x) into %T: got %v, want %v", data, v, err, kind)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("not an *Error: %T", err)
	}
	return e
}

// decodeOK decodes data into a new T.
func decodeOK[T any](t *testing.T, data []byte) T {
	t.Helper()
	c, err := For[T]()
	if err != nil {
		t.Fatal(err)
	}
	var v T
	if err := c.Decode(data, &v); err != nil {
		t.Fatalf("Decode(%x) into %T: %v", data, v, err)
	}
	return v
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// deepEqual is reflect.DeepEqual with NaN equal to NaN.
func deepEqual(a, b any) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	if !va.IsValid() || !vb.IsValid() {
		return va.IsValid() == vb.IsValid()
	}
	return valueEqual(va, vb, 0)
}

func valueEqual(a, b reflect.Value, depth int) bool {
	if a.Type() != b.Type() {
		return false
	}
	if depth > 200 {
		return true
	}
	if equal, ok := eachPart(a, b, func(x, y reflect.Value) bool { return valueEqual(x, y, depth+1) }); ok {
		return equal
	}
	switch a.Kind() {
	case reflect.Float32, reflect.Float64:
		x, y := a.Float(), b.Float()
		return x == y || (x != x && y != y)
	case reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return valueEqual(a.Elem(), b.Elem(), depth+1)
	case reflect.Map:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		it := a.MapRange()
		for it.Next() {
			bv := b.MapIndex(it.Key())
			if !bv.IsValid() {
				// Keys holding NaN cannot be looked up: skip them.
				if hasNaN(it.Key()) {
					continue
				}
				return false
			}
			if !valueEqual(it.Value(), bv, depth+1) {
				return false
			}
		}
		return true
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return a.Uint() == b.Uint()
	case reflect.String:
		return a.String() == b.String()
	case reflect.Complex64, reflect.Complex128:
		return a.Complex() == b.Complex()
	}
	return a.IsNil() == b.IsNil() // chan, func, unsafe.Pointer: nil or not
}

// eachPart compares a and b, of the same kind, part by part with eq when
// they are pointers (nil or not, then what they point to), slices (nil
// or not, then their elements), arrays or structs; ok is false for the
// other kinds.
func eachPart(a, b reflect.Value, eq func(a, b reflect.Value) bool) (equal, ok bool) {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() || a.Pointer() == b.Pointer() {
			return a.IsNil() == b.IsNil(), true
		}
		return eq(a.Elem(), b.Elem()), true
	case reflect.Slice:
		if a.IsNil() != b.IsNil() {
			return false, true
		}
		fallthrough
	case reflect.Array:
		if a.Len() != b.Len() {
			return false, true
		}
		for i := range a.Len() {
			if !eq(a.Index(i), b.Index(i)) {
				return false, true
			}
		}
		return true, true
	case reflect.Struct:
		for i := range a.NumField() {
			if !eq(a.Field(i), b.Field(i)) {
				return false, true
			}
		}
		return true, true
	}
	return false, false
}

func hasNaN(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		return v.Float() != v.Float()
	case reflect.Interface, reflect.Pointer:
		return !v.IsNil() && hasNaN(v.Elem())
	case reflect.Array, reflect.Struct:
		return anyElem(v, false, hasNaN)
	}
	return false
}

// anyElem reports whether has holds for an element of v, if v is an
// array or a slice, or for a field of v, if v is a struct (only a field
// msgpack encodes, if encodedOnly); it is false for the other kinds.
func anyElem(v reflect.Value, encodedOnly bool, has func(reflect.Value) bool) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if has(v.Index(i)) {
				return true
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if (!encodedOnly || encodedField(v.Type().Field(i))) && has(v.Field(i)) {
				return true
			}
		}
	}
	return false
}

// The oracle's allowance for msgpack/v5's sign error where a field
// shadows another is that error alone: any other difference fails.
func TestSameDecodingIsNarrow(t *testing.T) {
	type shadow struct {
		X  int               `msgpack:"a"`
		Y  int               `msgpack:"a"`
		F  float32           `msgpack:"f"`
		D  any               `msgpack:"d"`
		M  map[string]string `msgpack:"m"`
		N  uint64            `msgpack:"n"`
		Fs []float64         `msgpack:"fs"`
	}
	typ := reflect.TypeFor[shadow]()
	base := func() shadow {
		return shadow{F: 1 << 63, D: float64(1 << 63), M: map[string]string{"k": "right"}, N: 1, Fs: []float64{1 << 63, 2}}
	}
	flipped := base()
	flipped.F, flipped.D, flipped.Fs = -(1 << 63), -float64(1<<63), []float64{-(1 << 63), 2}
	for _, c := range []struct {
		what string
		v5   func(*shadow)
		same bool
	}{
		{"equal", func(*shadow) {}, true},
		{"msgpack/v5's sign error", func(s *shadow) { *s = flipped }, true},
		{"a map value", func(s *shadow) { s.M = map[string]string{"k": "WRONG"} }, false},
		{"an integer", func(s *shadow) { s.N = 99 }, false},
		{"a float off by one step", func(s *shadow) { s.F = 1<<63 + 1<<40 }, false},
		{"a small float's sign", func(s *shadow) { s.Fs = []float64{1 << 63, -2} }, false},
		{"an interface's type", func(s *shadow) { s.D = float32(1 << 63) }, false},
	} {
		v5 := base()
		c.v5(&v5)
		codec := base()
		if got := sameDecoding(typ, reflect.ValueOf(codec), reflect.ValueOf(v5)); got != c.same {
			t.Errorf("%s: sameDecoding %v, want %v", c.what, got, c.same)
		}
	}
	// Without a shadowed field, only equal values agree.
	type plain struct{ F float32 }
	if sameDecoding(reflect.TypeFor[plain](), reflect.ValueOf(plain{1 << 63}), reflect.ValueOf(plain{-(1 << 63)})) {
		t.Error("a sign error without a shadowed field is accepted")
	}
}
