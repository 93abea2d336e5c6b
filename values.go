package instadump

import (
	"bufio"
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
