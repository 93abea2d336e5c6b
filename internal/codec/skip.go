package codec

import (
	"encoding/binary"
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

// skipCode decodes the header of the value whose code c (0xc0..0xdf) was
// read before *pos: the payload bytes that follow and the number of
// values it contains. ok is false for 0xc1 or a truncated header.
func skipCode(data []byte, pos *int, c byte) (body, elems int, ok bool) {
	p := *pos
	rest := len(data) - p
	switch c {
	case 0xc0, 0xc2, 0xc3: // nil, false, true
		return 0, 0, true
	case 0xc1:
		return 0, 0, false
	case 0xcc, 0xd0:
		return 1, 0, true
	case 0xcd, 0xd1:
		return 2, 0, true
	case 0xce, 0xd2, 0xca:
		return 4, 0, true
	case 0xcf, 0xd3, 0xcb:
		return 8, 0, true
	case 0xd4:
		return 2, 0, true
	case 0xd5:
		return 3, 0, true
	case 0xd6:
		return 5, 0, true
	case 0xd7:
		return 9, 0, true
	case 0xd8:
		return 17, 0, true
	case 0xc4, 0xd9: // bin8, str8
		if rest < 1 {
			return 0, 0, false
		}
		*pos = p + 1
		return int(data[p]), 0, true
	case 0xc5, 0xda:
		if rest < 2 {
			return 0, 0, false
		}
		*pos = p + 2
		return int(binary.BigEndian.Uint16(data[p:])), 0, true
	case 0xc6, 0xdb:
		if rest < 4 {
			return 0, 0, false
		}
		*pos = p + 4
		return int(binary.BigEndian.Uint32(data[p:])), 0, true
	case 0xc7: // ext8: len, type, data
		if rest < 1 {
			return 0, 0, false
		}
		*pos = p + 1
		return int(data[p]) + 1, 0, true
	case 0xc8:
		if rest < 2 {
			return 0, 0, false
		}
		*pos = p + 2
		return int(binary.BigEndian.Uint16(data[p:])) + 1, 0, true
	case 0xc9:
		if rest < 4 {
			return 0, 0, false
		}
		*pos = p + 4
		return int(binary.BigEndian.Uint32(data[p:])) + 1, 0, true
	case 0xdc:
		if rest < 2 {
			return 0, 0, false
		}
		*pos = p + 2
		return 0, int(binary.BigEndian.Uint16(data[p:])), true
	case 0xdd:
		if rest < 4 {
			return 0, 0, false
		}
		*pos = p + 4
		return 0, int(binary.BigEndian.Uint32(data[p:])), true
	case 0xde:
		if rest < 2 {
			return 0, 0, false
		}
		*pos = p + 2
		return 0, 2 * int(binary.BigEndian.Uint16(data[p:])), true
	case 0xdf:
		if rest < 4 {
			return 0, 0, false
		}
		*pos = p + 4
		return 0, 2 * int(binary.BigEndian.Uint32(data[p:])), true
	}
	return 0, 0, false
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
		var v uint64
		for _, b := range rest[:n] {
			v = v<<8 | uint64(b)
		}
		return v, true
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
	case 0xcc:
		return num(1, false)
	case 0xcd:
		return num(2, false)
	case 0xce:
		return num(4, false)
	case 0xcf:
		return num(8, false)
	case 0xd0:
		return num(1, true)
	case 0xd1:
		return num(2, true)
	case 0xd2:
		return num(4, true)
	case 0xd3:
		return num(8, true)
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
