package codec

import (
	"fmt"
	"math"
)

// Skip returns the length of the first msgpack value in data. It does not
// allocate and does not recurse: it counts the values still owed by the
// containers it has entered, so any nesting depth costs nothing. A value
// that data cannot hold (truncated, or a header claiming more elements
// than bytes remain) or the unused code 0xc1 is an *Error of kind
// ErrMalformed.
func Skip(data []byte) (n int, err error) {
	pos := 0
	// owed is the number of values still to skip; each takes at least
	// one byte, so owed > len(data)-pos means the input is truncated,
	// and owed never exceeds len(data).
	owed := 1
	for owed > 0 {
		if pos >= len(data) {
			return 0, errTruncated(pos)
		}
		c := data[pos]
		start := pos
		pos++
		owed--
		var body, elems int // bytes of payload, values contained
		switch {
		case c <= 0x7f || c >= 0xe0:
		case c <= 0x8f:
			elems = 2 * int(c&0x0f)
		case c <= 0x9f:
			elems = int(c & 0x0f)
		case c <= 0xbf:
			body = int(c & 0x1f)
		default:
			var ok bool
			body, elems, ok = skipCode(data, &pos, c)
			if !ok {
				if c == 0xc1 {
					return 0, errMalformed(start, "unused code 0xc1")
				}
				return 0, errTruncated(start)
			}
		}
		if body > len(data)-pos {
			return 0, errTruncated(start)
		}
		pos += body
		if elems > len(data)-pos-owed {
			return 0, errTruncated(start)
		}
		owed += elems
	}
	return pos, nil
}

// A skipHeader describes the value a code of 0xc0..0xdf starts: body
// bytes follow the code, after a length of size bytes if size is not 0.
// The length counts elems values each (1 for an array element, 2 for a
// map entry), or if elems is 0, more bytes of body (str, bin, ext).
// valid is false for the unused code 0xc1.
type skipHeader struct {
	body, size, elems uint8
	valid             bool
}

// skipHeaders is indexed by the code.
var skipHeaders = [0x100]skipHeader{
	0xc0: {valid: true},          // nil
	0xc2: {valid: true},          // false
	0xc3: {valid: true},          // true
	0xc4: {size: 1, valid: true}, // bin8, bin16, bin32
	0xc5: {size: 2, valid: true},
	0xc6: {size: 4, valid: true},
	0xc7: {body: 1, size: 1, valid: true}, // ext8, ext16, ext32: type, data
	0xc8: {body: 1, size: 2, valid: true},
	0xc9: {body: 1, size: 4, valid: true},
	0xca: {body: 4, valid: true}, // float32, float64
	0xcb: {body: 8, valid: true},
	0xcc: {body: 1, valid: true}, // uint8..uint64
	0xcd: {body: 2, valid: true},
	0xce: {body: 4, valid: true},
	0xcf: {body: 8, valid: true},
	0xd0: {body: 1, valid: true}, // int8..int64
	0xd1: {body: 2, valid: true},
	0xd2: {body: 4, valid: true},
	0xd3: {body: 8, valid: true},
	0xd4: {body: 2, valid: true}, // fixext1..fixext16: type, data
	0xd5: {body: 3, valid: true},
	0xd6: {body: 5, valid: true},
	0xd7: {body: 9, valid: true},
	0xd8: {body: 17, valid: true},
	0xd9: {size: 1, valid: true}, // str8, str16, str32
	0xda: {size: 2, valid: true},
	0xdb: {size: 4, valid: true},
	0xdc: {size: 2, elems: 1, valid: true}, // array16, array32
	0xdd: {size: 4, elems: 1, valid: true},
	0xde: {size: 2, elems: 2, valid: true}, // map16, map32
	0xdf: {size: 4, elems: 2, valid: true},
}

// skipCode decodes the header of the value whose code c (0xc0..0xdf) was
// read before *pos: the payload bytes that follow and the number of
// values it contains. ok is false for 0xc1 or a truncated header.
func skipCode(data []byte, pos *int, c byte) (body, elems int, ok bool) {
	h := skipHeaders[c]
	if h.size == 0 {
		return int(h.body), 0, h.valid
	}
	p := *pos
	if len(data)-p < int(h.size) {
		return 0, 0, false
	}
	*pos = p + int(h.size)
	n := int(beUint(data[p:], int(h.size)))
	if h.elems != 0 {
		return int(h.body), int(h.elems) * n, true
	}
	return int(h.body) + n, 0, true
}

// describe names the msgpack value starting at data[pos] for error
// messages: its type and, for scalars, its value.
func describe(data []byte, pos int) string {
	if pos >= len(data) {
		return "end of input"
	}
	c := data[pos]
	rest := data[pos+1:]
	be := func(n int) (uint64, bool) {
		if len(rest) < n {
			return 0, false
		}
		return beUint(rest, n), true
	}
	num := func(n int, signed bool) string {
		v, ok := be(n)
		if !ok {
			return "truncated msgpack integer"
		}
		if signed {
			shift := 64 - 8*n
			return fmt.Sprintf("msgpack integer %d", int64(v<<shift)>>shift)
		}
		return fmt.Sprintf("msgpack integer %d", v)
	}
	switch {
	case c <= 0x7f:
		return fmt.Sprintf("msgpack integer %d", c)
	case c >= 0xe0:
		return fmt.Sprintf("msgpack integer %d", int8(c))
	case c <= 0x8f:
		return fmt.Sprintf("msgpack map of %d", c&0x0f)
	case c <= 0x9f:
		return fmt.Sprintf("msgpack array of %d", c&0x0f)
	case c <= 0xbf:
		return "msgpack string"
	}
	switch c {
	case 0xc0:
		return "msgpack nil"
	case 0xc1:
		return "msgpack code 0xc1"
	case 0xc2, 0xc3:
		return "msgpack bool"
	case 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3:
		return num(numSizes[c-0xca], c >= 0xd0)
	case 0xca:
		if v, ok := be(4); ok {
			return fmt.Sprintf("msgpack float32 %v", math.Float32frombits(uint32(v)))
		}
	case 0xcb:
		if v, ok := be(8); ok {
			return fmt.Sprintf("msgpack float64 %v", math.Float64frombits(v))
		}
	case 0xc4, 0xc5, 0xc6:
		return "msgpack bin"
	case 0xd9, 0xda, 0xdb:
		return "msgpack string"
	case 0xdc, 0xdd:
		if v, ok := be(2 + 2*int(c-0xdc)); ok {
			return fmt.Sprintf("msgpack array of %d", v)
		}
	case 0xde, 0xdf:
		if v, ok := be(2 + 2*int(c-0xde)); ok {
			return fmt.Sprintf("msgpack map of %d", v)
		}
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		if len(rest) > 0 {
			return fmt.Sprintf("msgpack ext %d", int8(rest[0]))
		}
	case 0xc7, 0xc8, 0xc9:
		n := 1 << (c - 0xc7)
		if len(rest) > n {
			return fmt.Sprintf("msgpack ext %d", int8(rest[n]))
		}
	}
	return fmt.Sprintf("truncated msgpack value (code %#x)", c)
}
