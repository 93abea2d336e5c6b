package codec

import (
	"encoding/binary"
	"reflect"
	"unsafe"
)

// decoder reads one msgpack value from data, starting at pos. Every read
// checks the bytes remaining first: a decoder never reads past data, and
// never allocates for a length the remaining bytes cannot hold.
type decoder struct {
	data  []byte
	pos   int
	depth int
	// par allows decoding large slices and maps on several goroutines;
	// workers run with par false.
	par bool
}

// remaining is the number of unread bytes.
func (d *decoder) remaining() int { return len(d.data) - d.pos }

// enter counts one more level of nesting.
func (d *decoder) enter() error {
	d.depth++
	if d.depth > MaxDepth {
		return &Error{Kind: ErrTooDeep, Offset: d.pos, Msg: "more than 10000 levels of nesting"}
	}
	return nil
}

// mismatch reports that the value at start does not fit wanted.
func (d *decoder) mismatch(start int, wanted reflect.Type) error {
	if start < len(d.data) && d.data[start] == 0xc1 {
		return errMalformed(start, "unused code 0xc1")
	}
	return errMismatch(start, describe(d.data, start), wanted.String())
}

// mismatchName is mismatch with a type named by a string.
func (d *decoder) mismatchName(start int, wanted string) error {
	if start < len(d.data) && d.data[start] == 0xc1 {
		return errMalformed(start, "unused code 0xc1")
	}
	return errMismatch(start, describe(d.data, start), wanted)
}

// need fails unless n more bytes follow pos.
func (d *decoder) need(n int) error {
	if n > len(d.data)-d.pos {
		return errTruncated(d.pos)
	}
	return nil
}

func (d *decoder) u16() uint16 { v := binary.BigEndian.Uint16(d.data[d.pos:]); d.pos += 2; return v }
func (d *decoder) u32() uint32 { v := binary.BigEndian.Uint32(d.data[d.pos:]); d.pos += 4; return v }
func (d *decoder) u64() uint64 { v := binary.BigEndian.Uint64(d.data[d.pos:]); d.pos += 8; return v }

// strLen reads a str or bin header (msgpack/v5 accepts either for
// strings and byte slices). It returns -1 for nil. ok is false, with
// d.pos unchanged, if the value is neither.
func (d *decoder) strLen() (n int, ok bool, err error) {
	if d.pos >= len(d.data) {
		return 0, false, errTruncated(d.pos)
	}
	start := d.pos
	c := d.data[start]
	switch {
	case c >= 0xa0 && c <= 0xbf:
		d.pos++
		n = int(c & 0x1f)
	case c == 0xc0:
		d.pos++
		return -1, true, nil
	case c == 0xd9 || c == 0xc4:
		if err := d.need(2); err != nil {
			return 0, false, err
		}
		n = int(d.data[start+1])
		d.pos += 2
	case c == 0xda || c == 0xc5:
		if err := d.need(3); err != nil {
			return 0, false, err
		}
		d.pos++
		n = int(d.u16())
	case c == 0xdb || c == 0xc6:
		if err := d.need(5); err != nil {
			return 0, false, err
		}
		d.pos++
		n = int(d.u32())
	default:
		return 0, false, nil
	}
	if n > len(d.data)-d.pos {
		d.pos = start
		return 0, false, errTruncated(start)
	}
	return n, true, nil
}

// arrayLen reads an array header; -1 for nil. ok is false, with d.pos
// unchanged, if the value is not an array or nil. n never exceeds the
// bytes remaining (one per element at least).
func (d *decoder) arrayLen() (n int, ok bool, err error) {
	if d.pos >= len(d.data) {
		return 0, false, errTruncated(d.pos)
	}
	start := d.pos
	c := d.data[start]
	switch {
	case c >= 0x90 && c <= 0x9f:
		d.pos++
		n = int(c & 0x0f)
	case c == 0xc0:
		d.pos++
		return -1, true, nil
	case c == 0xdc:
		if err := d.need(3); err != nil {
			return 0, false, err
		}
		d.pos++
		n = int(d.u16())
	case c == 0xdd:
		if err := d.need(5); err != nil {
			return 0, false, err
		}
		d.pos++
		n = int(d.u32())
	default:
		return 0, false, nil
	}
	if n > len(d.data)-d.pos {
		d.pos = start
		return 0, false, errTruncated(start)
	}
	return n, true, nil
}

// mapLen reads a map header; -1 for nil. n never exceeds half the bytes
// remaining (two per entry at least).
func (d *decoder) mapLen() (n int, ok bool, err error) {
	if d.pos >= len(d.data) {
		return 0, false, errTruncated(d.pos)
	}
	start := d.pos
	c := d.data[start]
	switch {
	case c >= 0x80 && c <= 0x8f:
		d.pos++
		n = int(c & 0x0f)
	case c == 0xc0:
		d.pos++
		return -1, true, nil
	case c == 0xde:
		if err := d.need(3); err != nil {
			return 0, false, err
		}
		d.pos++
		n = int(d.u16())
	case c == 0xdf:
		if err := d.need(5); err != nil {
			return 0, false, err
		}
		d.pos++
		n = int(d.u32())
	default:
		return 0, false, nil
	}
	if n > (len(d.data)-d.pos)/2 {
		d.pos = start
		return 0, false, errTruncated(start)
	}
	return n, true, nil
}

// skip moves past one value.
func (d *decoder) skip() error {
	n, err := Skip(d.data[d.pos:])
	if err != nil {
		e := err.(*Error)
		e.Offset += d.pos
		return e
	}
	d.pos += n
	return nil
}

func decBool(d *decoder, p unsafe.Pointer) error {
	if d.pos >= len(d.data) {
		return errTruncated(d.pos)
	}
	switch d.data[d.pos] {
	case 0xc2, 0xc0:
		*(*bool)(p) = false
	case 0xc3:
		*(*bool)(p) = true
	default:
		return d.mismatchName(d.pos, "bool")
	}
	d.pos++
	return nil
}

func decString(d *decoder, p unsafe.Pointer) error {
	// Fast path: a short string.
	if d.pos < len(d.data) {
		if c := d.data[d.pos]; c >= 0xa0 && c <= 0xbf {
			n := int(c & 0x1f)
			start := d.pos + 1
			if n <= len(d.data)-start {
				*(*string)(p) = string(d.data[start : start+n])
				d.pos = start + n
				return nil
			}
		}
	}
	start := d.pos
	n, ok, err := d.strLen()
	if err != nil {
		return err
	}
	if !ok {
		return d.mismatchName(start, "string")
	}
	if n <= 0 {
		*(*string)(p) = ""
		return nil
	}
	*(*string)(p) = string(d.data[d.pos : d.pos+n])
	d.pos += n
	return nil
}

// decBytes decodes a []byte-kind slice: nil for nil, a new slice (never
// aliasing the input) otherwise, empty but not nil for a zero length.
func decBytes(d *decoder, p unsafe.Pointer) error {
	start := d.pos
	n, ok, err := d.strLen()
	if err != nil {
		return err
	}
	if !ok {
		return d.mismatchName(start, "[]byte")
	}
	h := (*sliceHeader)(p)
	if n < 0 {
		*h = sliceHeader{}
		return nil
	}
	b := make([]byte, n)
	copy(b, d.data[d.pos:])
	d.pos += n
	*h = sliceHeader{data: unsafe.Pointer(unsafe.SliceData(b)), len: n, cap: n}
	return nil
}

// byteArrayCodec compiles [n]byte-kind arrays: msgpack/v5 writes them as
// bin of n bytes, and reads a str or bin of at most n bytes into the
// first bytes (nil leaves the array as it is).
func byteArrayCodec(n int) (encFunc, decFunc) {
	enc := func(e *encoder, p unsafe.Pointer) error {
		e.buf = appendBinLen(e.buf, n)
		e.buf = append(e.buf, unsafe.Slice((*byte)(p), n)...)
		return nil
	}
	dec := func(d *decoder, p unsafe.Pointer) error {
		start := d.pos
		m, ok, err := d.strLen()
		if err != nil {
			return err
		}
		if !ok {
			return d.mismatchName(start, "byte array")
		}
		if m < 0 {
			return nil
		}
		if m > n {
			return &Error{Kind: ErrMismatch, Offset: start, Stored: describe(d.data, start),
				Msg: "more bytes than the array holds"}
		}
		copy(unsafe.Slice((*byte)(p), n), d.data[d.pos:d.pos+m])
		d.pos += m
		return nil
	}
	return enc, dec
}

// sliceHeader is the memory layout of every slice type. Its data field
// is an unsafe.Pointer, so stores of a sliceHeader have write barriers.
type sliceHeader struct {
	data     unsafe.Pointer
	len, cap int
}
