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

func emptyInt(k reflect.Kind) func(unsafe.Pointer) bool {
	switch k {
	case reflect.Int8, reflect.Uint8:
		return func(p unsafe.Pointer) bool { return *(*uint8)(p) == 0 }
	case reflect.Int16, reflect.Uint16:
		return func(p unsafe.Pointer) bool { return *(*uint16)(p) == 0 }
	case reflect.Int32, reflect.Uint32:
		return func(p unsafe.Pointer) bool { return *(*uint32)(p) == 0 }
	}
	return func(p unsafe.Pointer) bool { return *(*uint64)(p) == 0 }
}

// intCodec compiles the integer kinds. Decoding is strict: a value that
// does not fit the kind exactly is ErrMismatch (see num).
func intCodec(k reflect.Kind) (encFunc, decFunc) {
	switch k {
	case reflect.Int:
		return func(e *encoder, p unsafe.Pointer) error {
				e.buf = appendInt(e.buf, int64(*(*int)(p)))
				return nil
			}, func(d *decoder, p unsafe.Pointer) error {
				v, err := d.signed(math.MinInt, math.MaxInt, "int")
				*(*int)(p) = int(v)
				return err
			}
	case reflect.Int8:
		return func(e *encoder, p unsafe.Pointer) error {
				e.buf = append(e.buf, 0xd0, *(*byte)(p))
				return nil
			}, func(d *decoder, p unsafe.Pointer) error {
				v, err := d.signed(math.MinInt8, math.MaxInt8, "int8")
				*(*int8)(p) = int8(v)
				return err
			}
	case reflect.Int16:
		return func(e *encoder, p unsafe.Pointer) error {
				n := *(*uint16)(p)
				e.buf = append(e.buf, 0xd1, byte(n>>8), byte(n))
				return nil
			}, func(d *decoder, p unsafe.Pointer) error {
				v, err := d.signed(math.MinInt16, math.MaxInt16, "int16")
				*(*int16)(p) = int16(v)
				return err
			}
	case reflect.Int32:
		return func(e *encoder, p unsafe.Pointer) error {
				n := *(*uint32)(p)
				e.buf = append(e.buf, 0xd2, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
				return nil
			}, func(d *decoder, p unsafe.Pointer) error {
				v, err := d.signed(math.MinInt32, math.MaxInt32, "int32")
				*(*int32)(p) = int32(v)
				return err
			}
	case reflect.Int64:
		return func(e *encoder, p unsafe.Pointer) error {
				e.buf = appendU64(e.buf, 0xd3, *(*uint64)(p))
				return nil
			}, func(d *decoder, p unsafe.Pointer) error {
				v, err := d.signed(math.MinInt64, math.MaxInt64, "int64")
				*(*int64)(p) = v
				return err
			}
	case reflect.Uint:
		return func(e *encoder, p unsafe.Pointer) error {
				e.buf = appendUint(e.buf, uint64(*(*uint)(p)))
				return nil
			}, func(d *decoder, p unsafe.Pointer) error {
				v, err := d.unsigned(math.MaxUint, "uint")
				*(*uint)(p) = uint(v)
				return err
			}
	case reflect.Uint8:
		return func(e *encoder, p unsafe.Pointer) error {
				e.buf = append(e.buf, 0xcc, *(*byte)(p))
				return nil
			}, func(d *decoder, p unsafe.Pointer) error {
				v, err := d.unsigned(math.MaxUint8, "uint8")
				*(*uint8)(p) = uint8(v)
				return err
			}
	case reflect.Uint16:
		return func(e *encoder, p unsafe.Pointer) error {
				n := *(*uint16)(p)
				e.buf = append(e.buf, 0xcd, byte(n>>8), byte(n))
				return nil
			}, func(d *decoder, p unsafe.Pointer) error {
				v, err := d.unsigned(math.MaxUint16, "uint16")
				*(*uint16)(p) = uint16(v)
				return err
			}
	case reflect.Uint32:
		return func(e *encoder, p unsafe.Pointer) error {
				n := *(*uint32)(p)
				e.buf = append(e.buf, 0xce, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
				return nil
			}, func(d *decoder, p unsafe.Pointer) error {
				v, err := d.unsigned(math.MaxUint32, "uint32")
				*(*uint32)(p) = uint32(v)
				return err
			}
	}
	return func(e *encoder, p unsafe.Pointer) error {
			e.buf = appendU64(e.buf, 0xcf, *(*uint64)(p))
			return nil
		}, func(d *decoder, p unsafe.Pointer) error {
			v, err := d.unsigned(math.MaxUint64, "uint64")
			*(*uint64)(p) = v
			return err
		}
}

// numClass is the kind of a msgpack number read by num.
type numClass uint8

const (
	numNil   numClass = iota
	numUint           // u holds the value
	numNeg            // int64(u) holds the value, which is negative
	numFloat          // f holds the value (from a float32 or a float64)
	numNone           // not a number: d.pos is unchanged
)

// num reads a msgpack number or nil. msgpack/v5 reads nil as 0 for
// every numeric kind, so nil is a number here.
func (d *decoder) num() (cls numClass, u uint64, f float64, err error) {
	if d.pos >= len(d.data) {
		return numNone, 0, 0, errTruncated(d.pos)
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
	var size int
	switch c {
	case 0xc0:
		d.pos++
		return numNil, 0, 0, nil
	case 0xcc, 0xd0:
		size = 1
	case 0xcd, 0xd1:
		size = 2
	case 0xce, 0xd2, 0xca:
		size = 4
	case 0xcf, 0xd3, 0xcb:
		size = 8
	default:
		return numNone, 0, 0, nil
	}
	if err := d.need(1 + size); err != nil {
		return numNone, 0, 0, err
	}
	d.pos++
	switch c {
	case 0xcc:
		u = uint64(d.data[d.pos])
		d.pos++
	case 0xcd:
		u = uint64(d.u16())
	case 0xce:
		u = uint64(d.u32())
	case 0xcf:
		u = d.u64()
	case 0xd0:
		u = uint64(int64(int8(d.data[d.pos])))
		d.pos++
	case 0xd1:
		u = uint64(int64(int16(d.u16())))
	case 0xd2:
		u = uint64(int64(int32(d.u32())))
	case 0xd3:
		u = d.u64()
	case 0xca:
		return numFloat, 0, float64(math.Float32frombits(d.u32())), nil
	case 0xcb:
		return numFloat, 0, math.Float64frombits(d.u64()), nil
	}
	if c >= 0xd0 && int64(u) < 0 {
		return numNeg, u, 0, nil
	}
	return numUint, u, 0, nil
}

// signed decodes an integer in [lo, hi]. A float is accepted only if it
// is integral and in range; anything else is ErrMismatch.
func (d *decoder) signed(lo, hi int64, wanted string) (int64, error) {
	// Fast path: a positive fixint.
	if d.pos < len(d.data) {
		if c := d.data[d.pos]; c <= 0x7f {
			d.pos++
			return int64(c), nil
		}
	}
	start := d.pos
	cls, u, f, err := d.num()
	if err != nil {
		return 0, err
	}
	switch cls {
	case numNil:
		return 0, nil
	case numUint:
		if u <= uint64(hi) {
			return int64(u), nil
		}
	case numNeg:
		if int64(u) >= lo {
			return int64(u), nil
		}
	case numFloat:
		// -2^63 <= f < 2^63 holds every int64; lo and hi are exact
		// as floats for the smaller kinds.
		if f == math.Trunc(f) && f >= float64(lo) && f < -float64(math.MinInt64) && (hi == math.MaxInt64 || f <= float64(hi)) {
			return int64(f), nil
		}
	case numNone:
		return 0, d.mismatchName(start, wanted)
	}
	d.pos = start
	return 0, d.mismatchName(start, wanted)
}

// unsigned decodes an integer in [0, hi], strictly as signed does.
func (d *decoder) unsigned(hi uint64, wanted string) (uint64, error) {
	if d.pos < len(d.data) {
		if c := d.data[d.pos]; c <= 0x7f {
			d.pos++
			return uint64(c), nil
		}
	}
	start := d.pos
	cls, u, f, err := d.num()
	if err != nil {
		return 0, err
	}
	switch cls {
	case numNil:
		return 0, nil
	case numUint:
		if u <= hi {
			return u, nil
		}
	case numFloat:
		if f == math.Trunc(f) && f >= 0 && f < 18446744073709551616.0 && (hi == math.MaxUint64 || f <= float64(hi)) {
			return uint64(f), nil
		}
	}
	d.pos = start
	return 0, d.mismatchName(start, wanted)
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

func decFloat64(d *decoder, p unsafe.Pointer) error {
	start := d.pos
	cls, u, f, err := d.num()
	if err != nil {
		return err
	}
	switch cls {
	case numNil:
		*(*float64)(p) = 0
		return nil
	case numFloat:
		*(*float64)(p) = f
		return nil
	case numUint, numNeg:
		if v, ok := float64Exact(cls, u); ok {
			*(*float64)(p) = v
			return nil
		}
	}
	d.pos = start
	return d.mismatchName(start, "float64")
}

func decFloat32(d *decoder, p unsafe.Pointer) error {
	start := d.pos
	cls, u, f, err := d.num()
	if err != nil {
		return err
	}
	switch cls {
	case numNil:
		*(*float32)(p) = 0
		return nil
	case numFloat:
		// A float64 is accepted when float32 holds it exactly; NaN and
		// the infinities carry over.
		if g := float32(f); float64(g) == f || f != f {
			*(*float32)(p) = g
			return nil
		}
	case numUint, numNeg:
		if v, ok := float64Exact(cls, u); ok {
			if g := float32(v); float64(g) == v {
				*(*float32)(p) = g
				return nil
			}
		}
	}
	d.pos = start
	return d.mismatchName(start, "float32")
}
