package codec

import (
	"errors"
	"math"
	"math/big"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

var numKinds = []reflect.Type{
	reflect.TypeFor[int8](), reflect.TypeFor[int16](), reflect.TypeFor[int32](), reflect.TypeFor[int64](),
	reflect.TypeFor[int](), reflect.TypeFor[uint8](), reflect.TypeFor[uint16](), reflect.TypeFor[uint32](),
	reflect.TypeFor[uint64](), reflect.TypeFor[uint](), reflect.TypeFor[float32](), reflect.TypeFor[float64](),
}

// boundaryInts are the edges of every integer width, and of exact
// floats.
func boundaryInts() []*big.Int {
	var out []*big.Int
	for _, bits := range []uint{7, 8, 15, 16, 24, 31, 32, 53, 63, 64} {
		p := new(big.Int).Lsh(big.NewInt(1), bits)
		for _, d := range []int64{-1, 0, 1} {
			out = append(out, new(big.Int).Add(p, big.NewInt(d)))
			out = append(out, new(big.Int).Neg(new(big.Int).Add(p, big.NewInt(d))))
		}
	}
	for _, v := range []int64{0, 1, -1, 31, 32, -32, -33, 127, 128} {
		out = append(out, big.NewInt(v))
	}
	return out
}

// set stores the number x in a new value of t; false if it does not
// fit exactly.
func set(t reflect.Type, x *big.Float) (reflect.Value, bool) {
	v := reflect.New(t).Elem()
	switch t.Kind() {
	case reflect.Float32:
		f, acc := x.Float32()
		v.SetFloat(float64(f))
		return v, acc == big.Exact
	case reflect.Float64:
		f, acc := x.Float64()
		v.SetFloat(f)
		return v, acc == big.Exact
	}
	if !x.IsInt() {
		return v, false
	}
	i, _ := x.Int(nil)
	if strings.HasPrefix(t.Kind().String(), "uint") {
		if i.Sign() < 0 || i.BitLen() > t.Bits() {
			return v, false
		}
		v.SetUint(i.Uint64())
		return v, true
	}
	if i.BitLen() > t.Bits()-1 && !(i.Sign() < 0 && i.BitLen() == t.Bits() && new(big.Int).Neg(i).TrailingZeroBits() == uint(t.Bits()-1)) {
		return v, false
	}
	v.SetInt(i.Int64())
	return v, true
}

// TestStrictNumbers: every number at every width boundary, stored as
// every kind it fits, decoded into every kind: accepted exactly when it
// fits, with that exact value (msgpack/v5 gives another for a uint64 of
// 2^63 or more into a float: it goes through int64); refused with
// ErrMismatch otherwise (where msgpack/v5 cuts).
func TestStrictNumbers(t *testing.T) {
	var values []*big.Float
	for _, i := range boundaryInts() {
		values = append(values, new(big.Float).SetInt(i))
	}
	for _, f := range []float64{0.5, -1.5, 1e300, -1e-300, 3, -128, 255, 1 << 24, 1<<24 + 1, 1 << 63, math.MaxFloat32, float64(math.SmallestNonzeroFloat32)} {
		values = append(values, big.NewFloat(f))
	}
	for _, x := range values {
		for _, from := range numKinds {
			src, ok := set(from, x)
			if !ok {
				continue
			}
			data, err := msgpack.Marshal(src.Addr().Interface())
			if err != nil {
				t.Fatal(err)
			}
			for _, to := range numKinds {
				want, fits := set(to, x)
				got := reflect.New(to)
				err := codecOf(to).dec(&decoder{data: data}, got.UnsafePointer())
				if !fits {
					if !errors.Is(err, ErrMismatch) {
						t.Errorf("%v %v (%x) into %v: got %v, %v; want ErrMismatch", from, x, data, to, got.Elem(), err)
					}
					continue
				}
				if err != nil || got.Elem().Interface() != want.Interface() {
					t.Errorf("%v %v (%x) into %v: got %v, %v; want %v", from, x, data, to, got.Elem(), err, want)
				}
			}
		}
	}
}

func TestStrictSpecialFloats(t *testing.T) {
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1)} {
		data, _ := msgpack.Marshal(f)
		g := decodeOK[float32](t, data)
		if !(math.IsNaN(f) && math.IsNaN(float64(g))) && float64(g) != f {
			t.Errorf("%v into float32: %v", f, g)
		}
		if f == 0 {
			if math.Signbit(float64(g)) != true {
				t.Errorf("-0 lost its sign")
			}
			decodeOK[int](t, data)
			continue
		}
		decodeErr[int64](t, data, ErrMismatch)
		decodeErr[uint8](t, data, ErrMismatch)
	}
	// nil is zero for every number, as in msgpack/v5.
	if decodeOK[int8](t, []byte{0xc0}) != 0 || decodeOK[float64](t, []byte{0xc0}) != 0 {
		t.Fatal("nil is not 0")
	}
	// Not a number at all.
	decodeErr[int](t, []byte{0xa1, 'x'}, ErrMismatch)
	decodeErr[float64](t, []byte{0xc3}, ErrMismatch)
}

// TestStrictInside: the rule holds inside structs, slices, arrays, map
// keys and values, and pointers, and the error says where.
func TestStrictInside(t *testing.T) {
	type S struct {
		Age  int8
		Tags []uint16
	}
	type Users struct {
		Users map[string]S
	}
	data := v5Marshal(t, &map[string]any{"Users": map[string]any{"bob": map[string]any{"Age": 300}}})
	e := decodeErr[Users](t, data, ErrMismatch)
	if e.Path != `.Users["bob"].Age` || !strings.Contains(e.Error(), "msgpack integer 300 into int8") {
		t.Fatalf("error: %v (path %q)", e, e.Path)
	}
	data = v5Marshal(t, &[]any{S{}, S{}, S{}, map[string]any{"Tags": []any{-5}}})
	e = decodeErr[[]S](t, data, ErrMismatch)
	if e.Path != `[3].Tags[0]` || e.Stored != "msgpack integer -5" {
		t.Fatalf("error: %v (path %q)", e, e.Path)
	}
	data = v5Marshal(t, &map[int]int{300: 1})
	decodeErr[map[int8]int](t, data, ErrMismatch)
	data = v5Marshal(t, &map[string]int{"k": -5})
	e = decodeErr[map[string]uint32](t, data, ErrMismatch)
	if e.Path != `["k"]` {
		t.Fatalf("path %q", e.Path)
	}
	data = v5Marshal(t, &[2]int{1, 1 << 40})
	decodeErr[[2]int32](t, data, ErrMismatch)
	decodeErr[*int16](t, v5Marshal(t, ptr(70000)), ErrMismatch)
	// Lossless conversions msgpack/v5 makes are accepted.
	if got := decodeOK[int64](t, v5Marshal(t, ptr(int8(-3)))); got != -3 {
		t.Fatal(got)
	}
	if got := decodeOK[uint8](t, v5Marshal(t, ptr(int64(200)))); got != 200 {
		t.Fatal(got)
	}
	if got := decodeOK[string](t, v5Marshal(t, ptr([]byte("bin")))); got != "bin" {
		t.Fatal(got)
	}
	if got := decodeOK[[]byte](t, v5Marshal(t, ptr("str"))); string(got) != "str" {
		t.Fatal(got)
	}
	if got := decodeOK[float64](t, v5Marshal(t, ptr(float32(0.1)))); got != float64(float32(0.1)) {
		t.Fatal(got)
	}
}
