package codec

import (
	"math"
	"reflect"
	"unsafe"
)

// Encoding follows msgpack/v5 with default flags: int and uint take the
// smallest form (EncodeInt/EncodeUint); the sized kinds keep their width
// whatever the value (int8 -> d0 xx, uint16 -> cd xx xx, int64 -> d3 and
// 8 bytes, ...), as its encodeIntNCond do without UseCompactInts.

func appendUint(b []byte, n uint64) []byte {
	switch {
	case n <= math.MaxInt8:
		return append(b, byte(n))
	case n <= math.MaxUint8:
		return append(b, 0xcc, byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xcd, byte(n>>8), byte(n))
	case n <= math.MaxUint32:
		return append(b, 0xce, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return appendU64(b, 0xcf, n)
}

func appendInt(b []byte, n int64) []byte {
	switch {
	case n >= 0:
		return appendUint(b, uint64(n))
	case n >= -32:
		return append(b, byte(n))
	case n >= math.MinInt8:
		return append(b, 0xd0, byte(n))
	case n >= math.MinInt16:
		return append(b, 0xd1, byte(n>>8), byte(n))
	case n >= math.MinInt32:
		return append(b, 0xd2, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return appendU64(b, 0xd3, uint64(n))
}

func appendU64(b []byte, code byte, n uint64) []byte {
	return append(b, code, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32),
		byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func encBool(e *encoder, p unsafe.Pointer) error {
	if *(*bool)(p) {
		e.buf = append(e.buf, 0xc3)
	} else {
		e.buf = append(e.buf, 0xc2)
	}
	return nil
}

func encFloat32(e *encoder, p unsafe.Pointer) error {
	n := math.Float32bits(*(*float32)(p))
	e.buf = append(e.buf, 0xca, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	return nil
}

func encFloat64(e *encoder, p unsafe.Pointer) error {
	e.buf = appendU64(e.buf, 0xcb, math.Float64bits(*(*float64)(p)))
	return nil
}

// kindCodec is the encoder, decoder and omitempty rule of a basic kind.
type kindCodec struct {
	enc   encFunc
	dec   decFunc
	empty func(unsafe.Pointer) bool
}

// basicCodecs holds the codecs of the basic kinds, by kind; a named type
// has the memory layout of its kind.
var basicCodecs = [...]kindCodec{
	reflect.Bool:    {encBool, decBool, func(p unsafe.Pointer) bool { return !*(*bool)(p) }},
	reflect.Int:     intCodec[int](),
	reflect.Int8:    intCodec[int8](),
	reflect.Int16:   intCodec[int16](),
	reflect.Int32:   intCodec[int32](),
	reflect.Int64:   intCodec[int64](),
	reflect.Uint:    intCodec[uint](),
	reflect.Uint8:   intCodec[uint8](),
	reflect.Uint16:  intCodec[uint16](),
	reflect.Uint32:  intCodec[uint32](),
	reflect.Uint64:  intCodec[uint64](),
	reflect.Float32: {encFloat32, decFloat[float32](), func(p unsafe.Pointer) bool { return *(*float32)(p) == 0 }},
	reflect.Float64: {encFloat64, decFloat[float64](), func(p unsafe.Pointer) bool { return *(*float64)(p) == 0 }},
	reflect.String:  {encString, decString, func(p unsafe.Pointer) bool { return len(*(*string)(p)) == 0 }},
}

// basicKind reports whether k is one of the kinds of basicCodecs.
func basicKind(k reflect.Kind) bool {
	return int(k) < len(basicCodecs) && basicCodecs[k].enc != nil
}

// integer is the integer kinds.
type integer interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 | ~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64
}

// intCodec compiles the integer type T: int and uint in their smallest
// form, the sized kinds at their own width. Decoding is strict: a value
// that does not fit T exactly is ErrMismatch (see integer).
func intCodec[T integer]() kindCodec {
	t := reflect.TypeFor[T]()
	var enc encFunc
	switch t.Kind() {
	case reflect.Int:
		enc = func(e *encoder, p unsafe.Pointer) error {
			e.buf = appendInt(e.buf, int64(*(*T)(p)))
			return nil
		}
	case reflect.Uint:
		enc = func(e *encoder, p unsafe.Pointer) error {
			e.buf = appendUint(e.buf, uint64(*(*T)(p)))
			return nil
		}
	default:
		enc = func(e *encoder, p unsafe.Pointer) error {
			// int8..int64 as d0..d3, uint8..uint64 as cc..cf, then the
			// value, big-endian. The size and sign of T are constants
			// in each instantiation: one branch is compiled.
			u := uint64(*(*T)(p))
			code := byte(0xcc)
			if ^T(0) < 0 {
				code = 0xd0
			}
			switch unsafe.Sizeof(*(*T)(p)) {
			case 1:
				e.buf = append(e.buf, code, byte(u))
			case 2:
				e.buf = append(e.buf, code+1, byte(u>>8), byte(u))
			case 4:
				e.buf = append(e.buf, code+2, byte(u>>24), byte(u>>16), byte(u>>8), byte(u))
			default:
				e.buf = appendU64(e.buf, code+3, u)
			}
			return nil
		}
	}
	// The range of T: [lo, hi].
	bits := 8 * t.Size()
	lo, hi := int64(0), ^uint64(0)>>(64-bits)
	if ^T(0) < 0 {
		hi >>= 1
		lo = -int64(hi) - 1
	}
	wanted := t.String()
	dec := func(d *decoder, p unsafe.Pointer) error {
		v, err := d.integer(lo, hi, wanted)
		*(*T)(p) = T(v)
		return err
	}
	return kindCodec{enc, dec, func(p unsafe.Pointer) bool { return *(*T)(p) == 0 }}
}

// numClass is the kind of a msgpack number read by num.
type numClass uint8

const (
	numUint  numClass = iota // u holds the value
	numNeg                   // int64(u) holds the value, which is negative
	numFloat                 // f holds the value (from a float32 or a float64)
)

// numSizes[c-0xca] is the size of the value after the number code c:
// float32, float64, uint8..uint64, int8..int64.
var numSizes = [...]int{4, 8, 1, 2, 4, 8, 1, 2, 4, 8}

// num reads a msgpack number for a value of the Go type named wanted;
// msgpack/v5 reads nil as 0 for every numeric kind, so nil is the number
// 0 here. Anything else is ErrMismatch.
func (d *decoder) num(wanted string) (cls numClass, u uint64, f float64, err error) {
	if d.pos >= len(d.data) {
		return 0, 0, 0, errTruncated(d.pos)
	}
	c := d.data[d.pos]
	if c <= 0x7f {
		d.pos++
		return numUint, uint64(c), 0, nil
	}
	if c >= 0xe0 {
		d.pos++
		return numNeg, uint64(int64(int8(c))), 0, nil
	}
	if c == 0xc0 {
		d.pos++
		return numUint, 0, 0, nil
	}
	if c < 0xca || c > 0xd3 {
		return 0, 0, 0, d.mismatch(d.pos, wanted)
	}
	if u, err = d.sized(numSizes[c-0xca]); err != nil {
		return 0, 0, 0, err
	}
	switch c {
	case 0xd0:
		u = uint64(int64(int8(u)))
	case 0xd1:
		u = uint64(int64(int16(u)))
	case 0xd2:
		u = uint64(int64(int32(u)))
	case 0xca:
		return numFloat, 0, float64(math.Float32frombits(uint32(u))), nil
	case 0xcb:
		return numFloat, 0, math.Float64frombits(u), nil
	}
	if c >= 0xd0 && int64(u) < 0 {
		return numNeg, u, 0, nil
	}
	return numUint, u, 0, nil
}

// refuse reports that the number read from start does not fit the Go
// type named wanted, and moves back to start.
func (d *decoder) refuse(start int, wanted string) error {
	d.pos = start
	return d.mismatch(start, wanted)
}

// integer decodes an integer in [lo, hi] (lo <= 0), returning its bits
// (two's complement for a negative one). A float is accepted only if it
// is integral and in range; anything else is ErrMismatch.
func (d *decoder) integer(lo int64, hi uint64, wanted string) (uint64, error) {
	// Fast path: a positive fixint.
	if d.pos < len(d.data) {
		if c := d.data[d.pos]; c <= 0x7f {
			d.pos++
			return uint64(c), nil
		}
	}
	start := d.pos
	cls, u, f, err := d.num(wanted)
	if err != nil {
		return 0, err
	}
	if cls == numUint && u <= hi || cls == numNeg && int64(u) >= lo {
		return u, nil
	}
	// float64(hi)+1 is exact for the smaller kinds, and rounds to 2^63
	// or 2^64 for the largest: the first integer out of range.
	if cls == numFloat && f == math.Trunc(f) && f >= float64(lo) && f < float64(hi)+1 {
		if f < 0 {
			return uint64(int64(f)), nil
		}
		return uint64(f), nil
	}
	return 0, d.refuse(start, wanted)
}

// float64Exact converts an integer to float64, reporting whether the
// conversion is exact.
func float64Exact(cls numClass, u uint64) (float64, bool) {
	if cls == numNeg {
		i := int64(u)
		f := float64(i)
		// f == -2^63 converts back exactly; no int64 rounds below it.
		return f, f >= -9223372036854775808.0 && int64(f) == i
	}
	f := float64(u)
	return f, f < 18446744073709551616.0 && uint64(f) == u
}

// decFloat decodes a float, or an integer float64 holds exactly, into a
// T that holds it exactly (NaN and the infinities carry over to float32);
// anything else is ErrMismatch.
func decFloat[T float32 | float64]() decFunc {
	wanted := reflect.TypeFor[T]().String()
	return func(d *decoder, p unsafe.Pointer) error {
		start := d.pos
		cls, u, f, err := d.num(wanted)
		if err != nil {
			return err
		}
		if cls != numFloat {
			var ok bool
			if f, ok = float64Exact(cls, u); !ok {
				return d.refuse(start, wanted)
			}
		}
		g := T(f)
		if float64(g) != f && f == f {
			return d.refuse(start, wanted)
		}
		*(*T)(p) = g
		return nil
	}
}
