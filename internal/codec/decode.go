package codec

import (
	"encoding/binary"
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

// mismatch reports that the value at start does not fit the Go type
// named wanted.
func (d *decoder) mismatch(start int, wanted string) error {
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

// sized moves past the code at d.pos and reads the big-endian unsigned
// integer of size bytes (1, 2, 4 or 8) that follows it, if the input
// holds them.
func (d *decoder) sized(size int) (uint64, error) {
	if 1+size > len(d.data)-d.pos {
		return 0, errTruncated(d.pos)
	}
	d.pos += 1 + size
	return beUint(d.data[d.pos-size:], size), nil
}

// beUint reads the big-endian unsigned integer of size bytes (1, 2, 4 or
// 8) that b starts with.
func beUint(b []byte, size int) uint64 {
	switch size {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.BigEndian.Uint16(b))
	case 4:
		return uint64(binary.BigEndian.Uint32(b))
	}
	return binary.BigEndian.Uint64(b)
}

// A lenKind is the headers of one kind of value with a length: strings
// (msgpack/v5 accepts str and bin alike for strings and byte slices),
// arrays or maps.
type lenKind struct {
	fix, fixMask byte // the codes fix..fix|fixMask hold the length in their low bits
	// sized[c-0xc0] is the size of the length that follows code c (1,
	// 2 or 4 bytes), or 0 if c is not a header of the kind.
	sized [0x20]uint8
	shift uint // each element takes 1<<shift input bytes at least
}

var (
	strLens = lenKind{fix: 0xa0, fixMask: 0x1f, sized: [0x20]uint8{
		0xd9 - 0xc0: 1, 0xda - 0xc0: 2, 0xdb - 0xc0: 4, // str8/16/32
		0xc4 - 0xc0: 1, 0xc5 - 0xc0: 2, 0xc6 - 0xc0: 4, // bin8/16/32
	}}
	arrayLens = lenKind{fix: 0x90, fixMask: 0x0f, sized: [0x20]uint8{0xdc - 0xc0: 2, 0xdd - 0xc0: 4}}
	mapLens   = lenKind{fix: 0x80, fixMask: 0x0f, sized: [0x20]uint8{0xde - 0xc0: 2, 0xdf - 0xc0: 4}, shift: 1}
)

// starts reports whether code c starts a value of kind k other than nil.
func (k *lenKind) starts(c byte) bool {
	return c&^k.fixMask == k.fix || c >= 0xc0 && c <= 0xdf && k.sized[c-0xc0] != 0
}

// readLen reads a header of kind k for a value of the Go type named
// wanted; -1 for nil. A value of another kind is a mismatch. n never
// exceeds what the bytes remaining can hold: a byte per string byte or
// array element, two per map entry. On error, d.pos is unchanged.
func (d *decoder) readLen(k *lenKind, wanted string) (n int, err error) {
	if d.pos >= len(d.data) {
		return 0, errTruncated(d.pos)
	}
	start := d.pos
	c := d.data[start]
	switch {
	case c&^k.fixMask == k.fix:
		d.pos++
		n = int(c & k.fixMask)
	case c == 0xc0:
		d.pos++
		return -1, nil
	case !k.starts(c):
		return 0, d.mismatch(start, wanted)
	default:
		u, err := d.sized(int(k.sized[c-0xc0]))
		if err != nil {
			return 0, err
		}
		n = int(u)
	}
	if n > (len(d.data)-d.pos)>>k.shift {
		d.pos = start
		return 0, errTruncated(start)
	}
	return n, nil
}

// readKey reads a map key that must be a string (a field name, a key of
// map[string]interface{}): its bytes, aliasing the input, nil for nil.
func (d *decoder) readKey(wanted string) ([]byte, error) {
	if d.pos < len(d.data) {
		c := d.data[d.pos]
		// Fast path: a short name.
		if c >= 0xa0 && c <= 0xbf {
			start := d.pos + 1
			if end := start + int(c&0x1f); end <= len(d.data) {
				d.pos = end
				return d.data[start:end], nil
			}
		}
		if c != 0xc0 && !strLens.starts(c) {
			return nil, at(d.mismatch(d.pos, wanted), "{key}")
		}
	}
	n, err := d.readLen(&strLens, wanted)
	if err != nil || n <= 0 {
		return nil, err
	}
	d.pos += n
	return d.data[d.pos-n : d.pos], nil
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
		return d.mismatch(d.pos, "bool")
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
	n, err := d.readLen(&strLens, "string")
	if err != nil {
		return err
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
	n, err := d.readLen(&strLens, "[]byte")
	if err != nil {
		return err
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
		m, err := d.readLen(&strLens, "byte array")
		if err != nil {
			return err
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
