package codec

import (
	"math"
	"reflect"
	"sync"
	"time"
	"unsafe"
)

// Interface values are encoded by their dynamic type, with that type's
// codec (compiled on first sight), as msgpack/v5's encodeInterfaceValue
// does. The common dynamic types are switched on without reflection.

// anyCodecs returns the codecs of []any and map[string]any. It is
// called while encoding, never while compiling (it takes compileMu).
var anyCodecs func() (*codec, *codec)

func init() {
	anyCodecs = sync.OnceValues(func() (*codec, *codec) {
		return codecOf(reflect.TypeFor[[]any]()), codecOf(reflect.TypeFor[map[string]any]())
	})
}

func encAny(e *encoder, p unsafe.Pointer) error {
	return e.encodeDynamic(*(*any)(p))
}

// encIface encodes a non-empty interface of type t by its dynamic value.
func encIface(t reflect.Type) encFunc {
	return func(e *encoder, p unsafe.Pointer) error {
		v := reflect.NewAt(t, p).Elem()
		if v.IsNil() {
			e.buf = append(e.buf, 0xc0)
			return nil
		}
		return e.encodeDynamic(v.Elem().Interface())
	}
}

// encError encodes an error as msgpack/v5 does: nil, or its message.
func encError(e *encoder, p unsafe.Pointer) error {
	err := *(*error)(p)
	if err == nil {
		e.buf = append(e.buf, 0xc0)
		return nil
	}
	e.buf = appendString(e.buf, err.Error())
	return nil
}

func (e *encoder) encodeDynamic(x any) error {
	switch v := x.(type) {
	case nil:
		e.buf = append(e.buf, 0xc0)
		return nil
	case string:
		e.buf = appendString(e.buf, v)
		return nil
	case bool:
		return encBool(e, unsafe.Pointer(&v))
	case int:
		e.buf = appendInt(e.buf, int64(v))
		return nil
	case int8:
		e.buf = append(e.buf, 0xd0, byte(v))
		return nil
	case int16:
		e.buf = append(e.buf, 0xd1, byte(v>>8), byte(v))
		return nil
	case int32:
		e.buf = append(e.buf, 0xd2, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
		return nil
	case int64:
		e.buf = appendU64(e.buf, 0xd3, uint64(v))
		return nil
	case uint:
		e.buf = appendUint(e.buf, uint64(v))
		return nil
	case uint8:
		e.buf = append(e.buf, 0xcc, v)
		return nil
	case uint16:
		e.buf = append(e.buf, 0xcd, byte(v>>8), byte(v))
		return nil
	case uint32:
		e.buf = append(e.buf, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
		return nil
	case uint64:
		e.buf = appendU64(e.buf, 0xcf, v)
		return nil
	case float32:
		return encFloat32(e, unsafe.Pointer(&v))
	case float64:
		return encFloat64(e, unsafe.Pointer(&v))
	case []byte:
		return encBytes(e, unsafe.Pointer(&v))
	case time.Time:
		e.buf = appendTime(e.buf, v)
		return nil
	}
	if err := e.enter(); err != nil {
		return err
	}
	var err error
	switch v := x.(type) {
	case []any:
		s, _ := anyCodecs()
		err = s.enc(e, unsafe.Pointer(&v))
	case map[string]any:
		_, m := anyCodecs()
		err = m.enc(e, unsafe.Pointer(&v))
	default:
		// Copy the value into a variable of its type: the codec reads
		// through a pointer to it.
		rv := reflect.ValueOf(x)
		c := codecOf(rv.Type())
		if c.bad != nil && !c.encFallback {
			return &Error{Kind: ErrUnsupported, Offset: -1, Wanted: rv.Type().String(), Err: c.bad}
		}
		tmp := reflect.New(rv.Type())
		tmp.Elem().Set(rv)
		err = c.enc(e, tmp.UnsafePointer())
	}
	e.depth--
	return err
}

// decAny decodes into an interface{} what msgpack/v5's DecodeInterface
// returns: nil, bool, int8/16/32/64 (fixints are int8), uint8/16/32/64,
// float32/64, string, []byte (bin; empty but not nil for length 0),
// []interface{}, map[string]interface{} (keys must be str, bin or nil),
// time.Time (ext -1, in time.Local); other ext types go to msgpack/v5,
// which knows the registered ones. As in msgpack/v5, an interface that
// holds a non-nil pointer is decoded through: the pointed-to value gets
// the input (unless it is nil). An interface holding anything else is
// replaced (msgpack/v5 fails or panics there).
func decAny(d *decoder, p unsafe.Pointer) error {
	if cur := *(*any)(p); cur != nil && d.pos < len(d.data) && d.data[d.pos] != 0xc0 {
		if rv := reflect.ValueOf(cur); rv.Kind() == reflect.Pointer && !rv.IsNil() {
			c := codecOf(rv.Type().Elem())
			if err := d.enter(); err != nil {
				return err
			}
			err := c.dec(d, rv.UnsafePointer())
			d.depth--
			return err
		}
	}
	v, err := d.readAny()
	if err != nil {
		return err
	}
	*(*any)(p) = v
	return nil
}

func (d *decoder) readAny() (any, error) {
	if d.pos >= len(d.data) {
		return nil, errTruncated(d.pos)
	}
	start := d.pos
	c := d.data[start]
	switch {
	case c <= 0x7f || c >= 0xe0:
		d.pos++
		return int8(c), nil
	case c <= 0x8f:
		return d.readAnyMap()
	case c <= 0x9f:
		return d.readAnySlice()
	case c <= 0xbf:
		var s string
		err := decString(d, unsafe.Pointer(&s))
		return s, err
	}
	switch c {
	case 0xc0:
		d.pos++
		return nil, nil
	case 0xc2:
		d.pos++
		return false, nil
	case 0xc3:
		d.pos++
		return true, nil
	case 0xc1:
		return nil, errMalformed(start, "unused code 0xc1")
	case 0xd9, 0xda, 0xdb:
		var s string
		err := decString(d, unsafe.Pointer(&s))
		return s, err
	case 0xc4, 0xc5, 0xc6:
		var b []byte
		err := decBytes(d, unsafe.Pointer(&b))
		return b, err
	case 0xdc, 0xdd:
		return d.readAnySlice()
	case 0xde, 0xdf:
		return d.readAnyMap()
	case 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3:
		u, err := d.sized(numSizes[c-0xca])
		if err != nil {
			return nil, err
		}
		switch c {
		case 0xca:
			return math.Float32frombits(uint32(u)), nil
		case 0xcb:
			return math.Float64frombits(u), nil
		case 0xcc:
			return uint8(u), nil
		case 0xcd:
			return uint16(u), nil
		case 0xce:
			return uint32(u), nil
		case 0xcf:
			return u, nil
		case 0xd0:
			return int8(u), nil
		case 0xd1:
			return int16(u), nil
		case 0xd2:
			return int32(u), nil
		default:
			return int64(u), nil
		}
	}
	// An ext value.
	if t, ok, err := d.readTime(); err != nil || ok {
		return t, err
	}
	n, err := Skip(d.data[start:])
	if err != nil {
		e := err.(*Error)
		e.Offset += start
		return nil, e
	}
	d.pos = start + n
	return v5DecodeAny(d.data[start:d.pos], start)
}

func (d *decoder) readAnySlice() (any, error) {
	n, err := d.readLen(&arrayLens, "[]interface {}")
	if err != nil {
		return nil, err
	}
	s := make([]any, n)
	if n == 0 {
		return s, nil
	}
	if err := d.enter(); err != nil {
		return nil, err
	}
	for i := range s {
		if s[i], err = d.readAny(); err != nil {
			return nil, at(err, indexSeg(i))
		}
	}
	d.depth--
	return s, nil
}

func (d *decoder) readAnyMap() (any, error) {
	n, err := d.readLen(&mapLens, "map[string]interface {}")
	if err != nil {
		return nil, err
	}
	m := make(map[string]any, n)
	if n == 0 {
		return m, nil
	}
	if err := d.enter(); err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		key, err := d.readKey("string map key")
		if err != nil {
			return nil, err
		}
		k := string(key)
		v, err := d.readAny()
		if err != nil {
			return nil, at(err, keySeg(reflect.ValueOf(k)))
		}
		m[k] = v
	}
	d.depth--
	return m, nil
}
