package instadump

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"

	"github.com/instadump/instadump/internal/codec"
)

// How values become bytes and back: msgpack, exactly as msgpack/v5 writes
// it, through internal/codec, which compiles an encoder and a decoder per
// Go type, decodes strictly (a number that does not fit its type is a
// mismatch, never a value cut to fit), never panics, and bounds what it
// allocates by the bytes at hand.

// encodeValue writes v's msgpack encoding to w.
func encodeValue[T any](w io.Writer, v *T) error {
	c, err := codec.For[T]()
	if err != nil {
		return err
	}
	return c.Encode(w, v)
}

// decodeValue decodes raw into v.
func decodeValue[T any](raw []byte, v *T) error {
	c, err := codec.For[T]()
	if err != nil {
		return err
	}
	return c.Decode(raw, v)
}

// decodeError describes a stored value of state name that did not decode
// into wanted.
func decodeError(name string, raw []byte, wanted string, err error) error {
	if errors.Is(err, codec.ErrUnsupported) {
		return fmt.Errorf("%w: %v (state %s)", ErrUnsupportedType, err, quote(name))
	}
	return &DecodeError{State: name, Stored: storedKind(raw), Wanted: wanted, Err: err}
}

// checkType says whether values of t can be saved and loaded, naming the
// type and where in it the part that cannot is: an error wrapping
// ErrUnsupportedType, to be followed by what it is of.
func checkType(t reflect.Type) error {
	if err := codec.Check(t); err != nil {
		var ce *codec.Error
		if errors.As(err, &ce) && ce.Msg != "" { // "T cannot be encoded" says it all
			return fmt.Errorf("%w: %s", ErrUnsupportedType, ce.Msg)
		}
		return fmt.Errorf("%w: %v", ErrUnsupportedType, err)
	}
	return nil
}

// A Map is encoded and decoded entry by entry: a stream of msgpack items
// behind a map or array header.

// itemWriter writes msgpack items to w through a buffer.
type itemWriter struct {
	w   io.Writer
	buf []byte
}

const itemFlush = 64 << 10

func newItemWriter(w io.Writer) *itemWriter {
	return &itemWriter{w: w, buf: make([]byte, 0, itemFlush+itemFlush/4)}
}

// header appends a map or array header (fix, 16 or 32 bits, as msgpack/v5
// writes it) for n elements.
func (iw *itemWriter) header(fix, b16, b32 byte, n int) error {
	switch {
	case n < 16:
		iw.buf = append(iw.buf, fix|byte(n))
	case n <= 0xffff:
		iw.buf = binary.BigEndian.AppendUint16(append(iw.buf, b16), uint16(n))
	default:
		iw.buf = binary.BigEndian.AppendUint32(append(iw.buf, b32), uint32(n))
	}
	return iw.flush(false)
}

func (iw *itemWriter) mapLen(n int) error   { return iw.header(0x80, 0xde, 0xdf, n) }
func (iw *itemWriter) arrayLen(n int) error { return iw.header(0x90, 0xdc, 0xdd, n) }

// writePairs writes keys[i] then vals[i], for each i.
func writePairs[K, V any](iw *itemWriter, pc *codec.Pairs[K, V], keys []K, vals []V) error {
	var err error
	if iw.buf, err = pc.Append(iw.buf, keys, vals); err != nil {
		return err
	}
	return iw.flush(false)
}

// writeKeys writes keys.
func writeKeys[K, V any](iw *itemWriter, pc *codec.Pairs[K, V], keys []K) error {
	var err error
	if iw.buf, err = pc.AppendKeys(iw.buf, keys); err != nil {
		return err
	}
	return iw.flush(false)
}

// flush writes the buffer out when it is full, or at all.
func (iw *itemWriter) flush(all bool) error {
	if len(iw.buf) < itemFlush && !all || len(iw.buf) == 0 {
		return nil
	}
	_, err := iw.w.Write(iw.buf)
	iw.buf = iw.buf[:0]
	return err
}

// close writes what is left.
func (iw *itemWriter) close() error { return iw.flush(true) }

// itemReader reads msgpack items from bytes.
type itemReader struct {
	data []byte
	pos  int
}

func newItemReader(data []byte) *itemReader { return &itemReader{data: data} }

// header reads a map or array header, refusing a length the bytes left
// cannot back (an element takes at least per bytes).
func (ir *itemReader) header(what string, fix, b16, b32 byte, per int) (int, error) {
	if ir.pos >= len(ir.data) {
		return 0, fmt.Errorf("%w: the data ends where %s was expected", codec.ErrMalformed, what)
	}
	c := ir.data[ir.pos]
	var n, size int
	switch {
	case c&0xf0 == fix:
		n, size = int(c&0x0f), 1
	case c == b16 && len(ir.data)-ir.pos >= 3:
		n, size = int(binary.BigEndian.Uint16(ir.data[ir.pos+1:])), 3
	case c == b32 && len(ir.data)-ir.pos >= 5:
		n, size = int(binary.BigEndian.Uint32(ir.data[ir.pos+1:])), 5
	default:
		return 0, fmt.Errorf("%w: %s expected at byte %d, found code %#x", codec.ErrMismatch, what, ir.pos, c)
	}
	ir.pos += size
	if n > (len(ir.data)-ir.pos)/per {
		return 0, fmt.Errorf("%w: %s of %d elements in %d bytes", codec.ErrMalformed, what, n, len(ir.data)-ir.pos)
	}
	return n, nil
}

func (ir *itemReader) mapLen() (int, error)   { return ir.header("a map", 0x80, 0xde, 0xdf, 2) }
func (ir *itemReader) arrayLen() (int, error) { return ir.header("an array", 0x90, 0xdc, 0xdd, 1) }

// readPairs reads len(keys) keys and values into keys and vals.
func readPairs[K, V any](ir *itemReader, pc *codec.Pairs[K, V], keys []K, vals []V) error {
	n, err := pc.Decode(ir.data[ir.pos:], keys, vals)
	ir.pos += n
	return err
}

// readKeys reads len(keys) keys.
func readKeys[K, V any](ir *itemReader, pc *codec.Pairs[K, V], keys []K) error {
	n, err := pc.DecodeKeys(ir.data[ir.pos:], keys)
	ir.pos += n
	return err
}

// end checks that every byte was read.
func (ir *itemReader) end() error {
	if n := len(ir.data) - ir.pos; n > 0 {
		return fmt.Errorf("%w: %d bytes after the last item", codec.ErrMalformed, n)
	}
	return nil
}
