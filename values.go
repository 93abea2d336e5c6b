package instadump

import (
	"bufio"
	"bytes"
	"encoding"
	"fmt"
	"io"
	"reflect"
	"runtime/debug"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// How values become bytes and back: msgpack, as msgpack/v5 writes it.

var bufioPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// encodeValue writes v's msgpack encoding to w.
func encodeValue[T any](w io.Writer, v *T) error {
	bw := bufioPool.Get().(*bufio.Writer)
	bw.Reset(w)
	defer func() { bw.Reset(nil); bufioPool.Put(bw) }()
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(bw)
	if err := enc.Encode(v); err != nil {
		return err
	}
	return bw.Flush()
}

// decodeValue decodes raw into v. A panic of the decoder (or of a type's
// own UnmarshalMsgpack) is an error.
func decodeValue[T any](raw []byte, v *T) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the decoder panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return msgpack.Unmarshal(raw, v)
}

var (
	customDecoder   = reflect.TypeFor[msgpack.CustomDecoder]()
	unmarshaler     = reflect.TypeFor[msgpack.Unmarshaler]()
	binUnmarshaler  = reflect.TypeFor[encoding.BinaryUnmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// checkType says whether values of t can be saved and loaded, naming the
// type and where in it the part that cannot is: an error wrapping
// ErrUnsupportedType, to be followed by what it is of.
func checkType(t reflect.Type) error {
	if err := walkType(t, t.String(), map[reflect.Type]bool{}); err != nil {
		return fmt.Errorf("%w: %v", ErrUnsupportedType, err)
	}
	return nil
}

func decodesItself(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	for _, i := range []reflect.Type{customDecoder, unmarshaler, binUnmarshaler, textUnmarshaler} {
		if t.Implements(i) || p.Implements(i) {
			return true
		}
	}
	return false
}

func walkType(t reflect.Type, path string, seen map[reflect.Type]bool) error {
	if seen[t] || decodesItself(t) {
		return nil
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Chan, reflect.Func, reflect.Complex64, reflect.Complex128, reflect.UnsafePointer:
		return fmt.Errorf("%s is a %s, which cannot be encoded (tag the field `msgpack:\"-\"` to leave it out)", path, t.Kind())
	case reflect.Interface:
		if t.NumMethod() > 0 {
			return fmt.Errorf("%s is the interface %s, which a stored value cannot be decoded into (use a concrete type, or any)", path, t)
		}
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return walkType(t.Elem(), path+elemPath(t), seen)
	case reflect.Map:
		if err := walkType(t.Key(), path+"[key]", seen); err != nil {
			return err
		}
		return walkType(t.Elem(), path+"[]", seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() && !f.Anonymous || f.Tag.Get("msgpack") == "-" {
				continue
			}
			if err := walkType(f.Type, path+"."+f.Name, seen); err != nil {
				return err
			}
		}
	}
	return nil
}

func elemPath(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		return ""
	}
	return "[]"
}

// Maps are encoded and decoded entry by entry: a stream of msgpack items.

// itemWriter writes msgpack items to a buffered writer.
type itemWriter struct {
	bw  *bufio.Writer
	enc *msgpack.Encoder
}

func newItemWriter(w io.Writer) *itemWriter {
	bw := bufioPool.Get().(*bufio.Writer)
	bw.Reset(w)
	enc := msgpack.GetEncoder()
	enc.Reset(bw)
	return &itemWriter{bw: bw, enc: enc}
}

func (iw *itemWriter) mapLen(n int) error   { return iw.enc.EncodeMapLen(n) }
func (iw *itemWriter) arrayLen(n int) error { return iw.enc.EncodeArrayLen(n) }

func writeItem[T any](iw *itemWriter, v *T) error { return iw.enc.Encode(v) }

// close flushes and gives the buffers back.
func (iw *itemWriter) close() error {
	err := iw.bw.Flush()
	iw.bw.Reset(nil)
	bufioPool.Put(iw.bw)
	msgpack.PutEncoder(iw.enc)
	return err
}

// itemReader reads msgpack items from bytes.
type itemReader struct {
	r   *bytes.Reader
	dec *msgpack.Decoder
}

func newItemReader(data []byte) *itemReader {
	r := bytes.NewReader(data)
	return &itemReader{r: r, dec: msgpack.NewDecoder(r)}
}

// mapLen reads a map header, refusing a length the bytes left cannot
// back (an entry takes at least two bytes).
func (ir *itemReader) mapLen() (int, error) {
	n, err := ir.dec.DecodeMapLen()
	if err == nil && (n < 0 || int64(n) > int64(ir.r.Len())/2) {
		err = fmt.Errorf("a map of %d entries in %d bytes", n, ir.r.Len())
	}
	return n, err
}

// arrayLen reads an array header, likewise bounded.
func (ir *itemReader) arrayLen() (int, error) {
	n, err := ir.dec.DecodeArrayLen()
	if err == nil && (n < 0 || int64(n) > int64(ir.r.Len())) {
		err = fmt.Errorf("an array of %d items in %d bytes", n, ir.r.Len())
	}
	return n, err
}

func readItem[T any](ir *itemReader, v *T) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the decoder panicked: %v", r)
		}
	}()
	return ir.dec.Decode(v)
}

// end checks that every byte was read.
func (ir *itemReader) end() error {
	if n := ir.r.Len(); n > 0 {
		return fmt.Errorf("%d bytes after the last item", n)
	}
	return nil
}
