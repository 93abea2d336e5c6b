package codec

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
)

// ErrFallback: msgpack/v5, or a method of the value it called
// (MarshalMsgpack, DecodeMsgpack, UnmarshalText, ...), failed or panicked
// on a part of the value the codec handed to it. Err holds the cause.
var ErrFallback = errors.New("msgpack/v5 or a method of the value failed")

// probeFallbacks counts types handed to msgpack/v5 by the zero-value
// probe (tests check that plain types never are).
var probeFallbacks atomic.Int64

// appendWriter lets a msgpack/v5 Encoder append to an encoder's buffer.
type appendWriter struct{ e *encoder }

func (w *appendWriter) Write(b []byte) (int, error) {
	w.e.buf = append(w.e.buf, b...)
	return len(b), nil
}

func (w *appendWriter) WriteByte(c byte) error {
	w.e.buf = append(w.e.buf, c)
	return nil
}

// panicError turns a recovered panic into an error.
func panicError(r any) error {
	if err, ok := r.(error); ok {
		return fmt.Errorf("panic: %w", err)
	}
	return fmt.Errorf("panic: %v", r)
}

// fallbackEnc encodes a value of t with msgpack/v5 (default flags), as
// an addressable value, so methods on *t are reached wherever the value
// is (msgpack/v5 itself fails on a map value whose methods need its
// address).
//
// What it wrote must be one whole msgpack value (what a decoder other than
// a CustomDecoder reads back), or, for a type that decodes itself with a
// CustomDecoder (which reads from the stream, as msgpack/v5's own
// EncodeMulti/DecodeMulti example does), one or more: anything else (two
// values from a MarshalMsgpack, a cut one, nothing) would save and never
// load, and is an ErrUnsupported error.
func fallbackEnc(t reflect.Type) encFunc {
	wanted := t.String()
	streams := decodesFromStream(t)
	return func(e *encoder, p unsafe.Pointer) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = &Error{Kind: ErrFallback, Offset: -1, Wanted: wanted, Err: panicError(r)}
			}
		}()
		start := len(e.buf)
		enc := msgpack.GetEncoder()
		enc.Reset(&appendWriter{e})
		err = enc.EncodeValue(reflect.NewAt(t, p).Elem())
		enc.Reset(nil)
		msgpack.PutEncoder(enc)
		if err != nil {
			return &Error{Kind: ErrFallback, Offset: -1, Wanted: wanted, Err: err}
		}
		if msg := checkOutput(e.buf[start:], streams); msg != "" {
			return &Error{Kind: ErrUnsupported, Offset: -1, Wanted: wanted,
				Msg:   "its msgpack encoder (EncodeMsgpack or MarshalMsgpack) " + msg + ": the value would save but never load; make it write one msgpack value",
				cause: ErrNeverLoads}
		}
		return nil
	}
}

// checkOutput says what is wrong with out, a marshaller's output, or "":
// it must be one whole msgpack value, or one or more if several may be.
func checkOutput(out []byte, several bool) string {
	if len(out) == 0 {
		return "wrote nothing"
	}
	n := 0
	for pos := 0; pos < len(out); n++ {
		k, err := Skip(out[pos:])
		if err != nil {
			return fmt.Sprintf("wrote %d bytes that are not whole msgpack (%v at byte %d)", len(out), err.(*Error).Msg, pos+err.(*Error).Offset)
		}
		pos += k
	}
	if n > 1 && !several {
		return fmt.Sprintf("wrote %d msgpack values", n)
	}
	return ""
}

// decodesFromStream reports whether msgpack/v5 decodes t with a
// CustomDecoder, which reads from the stream as many values as it likes.
// It picks the first of CustomDecoder, Unmarshaler, BinaryUnmarshaler and
// TextUnmarshaler that t implements, then that *t does.
func decodesFromStream(t reflect.Type) bool {
	for _, u := range [...]reflect.Type{t, reflect.PointerTo(t)} {
		for _, i := range decodeMethods {
			if u.Implements(i) {
				return i == decodeMethods[0] // CustomDecoder
			}
		}
		if t.Kind() == reflect.Pointer {
			break
		}
	}
	return false
}

// fallbackDec hands the input from the next value on to msgpack/v5 to
// decode into the value of type t at p, and moves past what it read. A
// CustomDecoder may read several msgpack values (msgpack/v5's own
// example does, writing them with EncodeMulti), so the value is not
// delimited with Skip: msgpack/v5 reads a bytes.Reader without
// buffering ahead, and what the reader has left says where it stopped.
func fallbackDec(t reflect.Type) decFunc {
	wanted := t.String()
	return func(d *decoder, p unsafe.Pointer) error {
		start := d.pos
		r := bytes.NewReader(d.data[start:])
		err := v5DecodeFrom(r, reflect.NewAt(t, p).Elem())
		d.pos = len(d.data) - r.Len()
		if err != nil {
			return &Error{Kind: ErrFallback, Offset: start, Stored: describe(d.data, start), Wanted: wanted, Err: err}
		}
		return nil
	}
}

// v5Decode decodes raw into v with msgpack/v5, turning panics into
// errors.
func v5Decode(raw []byte, v reflect.Value) error {
	return v5DecodeFrom(bytes.NewReader(raw), v)
}

func v5DecodeFrom(r *bytes.Reader, v reflect.Value) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicError(p)
		}
	}()
	dec := msgpack.GetDecoder()
	dec.Reset(r)
	err = dec.DecodeValue(v)
	dec.Reset(nil)
	msgpack.PutDecoder(dec)
	return err
}

// v5Encode encodes v with msgpack/v5, turning panics into errors.
func v5Encode(v reflect.Value) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r)
		}
	}()
	var buf bytes.Buffer
	enc := msgpack.GetEncoder()
	enc.Reset(&buf)
	err = enc.EncodeValue(v)
	enc.Reset(nil)
	msgpack.PutEncoder(enc)
	return buf.Bytes(), err
}

// v5DecodeAny decodes an ext value other than a time into an interface
// with msgpack/v5, which knows the ext types registered with it; one it
// cannot decode (an unknown ext type) is a mismatch.
func v5DecodeAny(raw []byte, start int) (any, error) {
	var v any
	if err := v5Decode(raw, reflect.ValueOf(&v).Elem()); err != nil {
		return nil, &Error{Kind: ErrMismatch, Offset: start, Stored: describe(raw, 0), Wanted: "interface {}", Err: err}
	}
	return v, nil
}
