package codec

import (
	"io"
	"reflect"
	"sync"
	"unsafe"
)

// Codec is the compiled msgpack encoder and decoder of T. It is safe for
// concurrent use.
type Codec[T any] struct {
	c *codec
}

var codecsT sync.Map // reflect.Type -> *Codec[T]

// For returns the codec of T, compiled on first use and cached. It fails
// (with Check's error) if values of T cannot be saved and loaded.
func For[T any]() (*Codec[T], error) {
	t := reflect.TypeFor[T]()
	if c, ok := codecsT.Load(t); ok {
		return c.(*Codec[T]), nil
	}
	if err := Check(t); err != nil {
		return nil, err
	}
	c, _ := codecsT.LoadOrStore(t, &Codec[T]{c: codecOf(t)})
	return c.(*Codec[T]), nil
}

// Append appends the msgpack encoding of *v to dst: the bytes msgpack/v5
// writes for *v with a default Encoder (maps in some iteration order).
// Large slices and maps are encoded on every core. On error it returns
// dst as it was and an *Error.
func (c *Codec[T]) Append(dst []byte, v *T) ([]byte, error) {
	if v == nil {
		return dst, &Error{Kind: ErrUnsupported, Offset: -1, Msg: "nil pointer"}
	}
	e := &encoder{buf: dst, par: true}
	if err := run(func() error { return c.c.enc(e, unsafe.Pointer(v)) }, -1); err != nil {
		return dst, err
	}
	return e.buf, nil
}

var encodeBufs = sync.Pool{New: func() any { b := make([]byte, 0, flushSize+flushSize/4); return &b }}

// Encode writes the msgpack encoding of *v to w (the bytes Append
// appends), through a buffer of about 64 KiB flushed as it fills. Large
// slices and maps are encoded on every core in batches written in order.
// On error, part of the encoding may have been written.
func (c *Codec[T]) Encode(w io.Writer, v *T) error {
	if v == nil {
		return &Error{Kind: ErrUnsupported, Offset: -1, Msg: "nil pointer"}
	}
	bp := encodeBufs.Get().(*[]byte)
	e := &encoder{buf: (*bp)[:0], w: w, par: true}
	err := run(func() error {
		if err := c.c.enc(e, unsafe.Pointer(v)); err != nil {
			return err
		}
		return e.flush()
	}, -1)
	if cap(e.buf) <= 1<<20 {
		*bp = e.buf[:0]
		encodeBufs.Put(bp)
	}
	return err
}

// Decode decodes data, which must hold exactly one msgpack value, into
// *v, giving what msgpack/v5's Unmarshal gives, with these differences:
// a lossy numeric conversion is an ErrMismatch error, where msgpack/v5
// cuts (300 into an int8, -5 into a uint32, 1.5 into an int) — integral
// floats into integers, integers into floats and float64 into float32 are
// accepted when exact; nesting is limited to MaxDepth; no length is
// trusted beyond the bytes that back it; an interface is replaced by the
// decoded value whatever it held; bytes after the value are an error.
//
// Like msgpack/v5, Decode merges into *v: struct fields absent from data
// keep their values and maps get entries added. Decode into a zero value
// to get exactly the stored value. Large slices and maps are decoded on
// every core. Strings and byte slices never alias data.
func (c *Codec[T]) Decode(data []byte, v *T) error {
	if v == nil {
		return &Error{Kind: ErrUnsupported, Offset: -1, Msg: "nil pointer"}
	}
	d := &decoder{data: data, par: true}
	return run(func() error {
		if err := c.c.dec(d, unsafe.Pointer(v)); err != nil {
			return err
		}
		if d.pos != len(d.data) {
			return errMalformed(d.pos, "bytes after the value")
		}
		return nil
	}, 0)
}

// run calls f, turning a panic into an *Error and completing the error's
// path.
func run(f func() error, off int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &Error{Kind: ErrFallback, Offset: off, Msg: "panic", Err: panicError(r)}
		}
		if e, ok := err.(*Error); ok {
			e.finish()
		}
	}()
	return f()
}
