package codec

import (
	"io"
	"math"
	"unsafe"
)

// encoder appends msgpack to buf. When w is set (streaming), containers
// call flush between elements once buf holds flushSize bytes, so buf
// stays bounded by flushSize plus one element.
type encoder struct {
	buf   []byte
	depth int
	w     io.Writer
	werr  error
	// par allows encoding large slices and maps on several goroutines;
	// workers run with par false.
	par bool
	// touched sums the bytes map encoding reads ahead (see
	// encodeGrouped); it is never used otherwise.
	touched uintptr
}

// flushSize is the buffer size at which a streaming encoder writes out.
const flushSize = 64 << 10

// enter counts one more level of nesting (pointers, interfaces, slices
// and maps: every cycle goes through one of them).
func (e *encoder) enter() error {
	e.depth++
	if e.depth > MaxDepth {
		return &Error{Kind: ErrTooDeep, Offset: -1, Msg: "more than 10000 levels of nesting (a cyclic value?)"}
	}
	return nil
}

// flushFull is called between the elements of a container: a streaming
// encoder writes out its buffer once it holds flushSize bytes.
func (e *encoder) flushFull() error {
	if e.w != nil && len(e.buf) >= flushSize {
		return e.flush()
	}
	return nil
}

func (e *encoder) flush() error {
	if e.werr != nil {
		return e.werr
	}
	if len(e.buf) > 0 {
		if _, err := e.w.Write(e.buf); err != nil {
			e.werr = err
			return err
		}
		e.buf = e.buf[:0]
	}
	return nil
}

// The headers of strings, bin, arrays and maps take the smallest form
// that holds their length: the fix form (strings of up to 31 bytes,
// arrays and maps of up to 15 elements) or a code and the length in 1
// (strings and bin only), 2 or 4 bytes.

func appendStrLen(b []byte, n int) []byte {
	if n < 32 {
		return append(b, 0xa0|byte(n))
	}
	return appendLen(b, n, 0xda, true) // str8/16/32: d9 da db
}

func appendString(b []byte, s string) []byte {
	return append(appendStrLen(b, len(s)), s...)
}

func appendBinLen(b []byte, n int) []byte {
	return appendLen(b, n, 0xc5, true) // bin8/16/32: c4 c5 c6
}

func appendArrayLen(b []byte, n int) []byte {
	if n < 16 {
		return append(b, 0x90|byte(n))
	}
	return appendLen(b, n, 0xdc, false) // array16/32: dc dd
}

func appendMapLen(b []byte, n int) []byte {
	if n < 16 {
		return append(b, 0x80|byte(n))
	}
	return appendLen(b, n, 0xde, false) // map16/32: de df
}

// appendLen appends a sized header for length n: code16-1 and one byte
// (if has8), code16 and two bytes, or code16+1 and four bytes.
func appendLen(b []byte, n int, code16 byte, has8 bool) []byte {
	switch {
	case has8 && n <= math.MaxUint8:
		return append(b, code16-1, byte(n))
	case n <= math.MaxUint16:
		return append(b, code16, byte(n>>8), byte(n))
	}
	return append(b, code16+1, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func encString(e *encoder, p unsafe.Pointer) error {
	e.buf = appendString(e.buf, *(*string)(p))
	return nil
}

// encBytes encodes a []byte-kind slice: nil as nil, otherwise bin.
func encBytes(e *encoder, p unsafe.Pointer) error {
	h := (*sliceHeader)(p)
	if h.data == nil {
		e.buf = append(e.buf, 0xc0)
		return nil
	}
	e.buf = appendBinLen(e.buf, h.len)
	e.buf = append(e.buf, unsafe.Slice((*byte)(h.data), h.len)...)
	return nil
}
