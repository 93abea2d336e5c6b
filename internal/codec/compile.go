package codec

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
)

// A codec is the compiled encoder and decoder of one Go type. It is built
// once, under compileMu, and never changed after it is published in
// codecs: every field is read-only from then on.
type codec struct {
	typ  reflect.Type
	size uintptr
	enc  encFunc
	dec  decFunc
	// empty reports msgpack/v5's omitempty rule for a value of typ.
	empty func(p unsafe.Pointer) bool
	// bad, if set, is why typ cannot be saved or loaded; the sides of
	// it not handed to msgpack/v5 return it as an ErrUnsupported error.
	bad error
	// encFallback/decFallback: the value is handed to msgpack/v5.
	encFallback, decFallback bool
	// elem and key are the element (slice, array, pointer, map value)
	// and key codecs of containers.
	elem, key *codec
	// done is set when the codec is complete (all fields set);
	// pending codecs are reached only through indirection.
	done bool
}

// encFunc appends the msgpack encoding of the value at p to e.buf.
type encFunc func(e *encoder, p unsafe.Pointer) error

// decFunc decodes the next msgpack value of d into the value at p.
type decFunc func(d *decoder, p unsafe.Pointer) error

var (
	codecs    sync.Map // reflect.Type -> *codec
	compileMu sync.Mutex
)

// codecOf returns the compiled codec of t, building it on first use.
func codecOf(t reflect.Type) *codec {
	if c, ok := codecs.Load(t); ok {
		return c.(*codec)
	}
	compileMu.Lock()
	defer compileMu.Unlock()
	if c, ok := codecs.Load(t); ok {
		return c.(*codec)
	}
	b := &builder{pending: make(map[reflect.Type]*codec)}
	c := b.build(t)
	b.probeDeferred()
	// Publish only after every codec of the graph is complete.
	for _, c := range b.built {
		codecs.Store(c.typ, c)
	}
	return c
}

// probeDeferred probes the codecs whose probe met a part of the graph not
// built yet, now that it is.
func (b *builder) probeDeferred() {
	for _, d := range b.deferred {
		b.probe(d)
		d.done = true
	}
	b.deferred = nil
}

// builder compiles a graph of types; recursive types meet their own
// pending codec and reach it through indirection.
type builder struct {
	pending  map[reflect.Type]*codec
	built    []*codec
	deferred []*codec // probed once the graph is complete
	// embedding is the chain of structs whose fields are being listed,
	// to refuse a struct that embeds itself (msgpack/v5 recurses forever).
	embedding []reflect.Type
}

var (
	timeType   = reflect.TypeFor[time.Time]()
	anyType    = reflect.TypeFor[any]()
	stringType = reflect.TypeFor[string]()
	errorType  = reflect.TypeFor[error]()

	// The interfaces msgpack/v5's _getEncoder and _getDecoder check, in
	// its order.
	encodeMethods = []reflect.Type{
		reflect.TypeFor[msgpack.CustomEncoder](), reflect.TypeFor[msgpack.Marshaler](),
		reflect.TypeFor[encoding.BinaryMarshaler](), reflect.TypeFor[encoding.TextMarshaler](),
	}
	decodeMethods = []reflect.Type{
		reflect.TypeFor[msgpack.CustomDecoder](), reflect.TypeFor[msgpack.Unmarshaler](),
		reflect.TypeFor[encoding.BinaryUnmarshaler](), reflect.TypeFor[encoding.TextUnmarshaler](),
	}
)

// customEnc reports whether msgpack/v5 encodes t with a method of t or
// *t (its _getEncoder checks these four interfaces on t, then on *t).
// Pointers are compiled (nil, then the element), which is what
// msgpack/v5's ptrEncoderFunc or encodeCustomValue do for them.
func customEnc(t reflect.Type) bool { return implementsOne(t, encodeMethods) }

// CustomCoded reports whether values of t (not a pointer) are encoded or
// decoded by a method of their own (EncodeMsgpack, MarshalMsgpack,
// MarshalBinary or MarshalText, or their decoding counterparts, on t or
// *t), which then decides alone what they load back as.
func CustomCoded(t reflect.Type) bool { return customEnc(t) || customDec(t) }

// customDec is customEnc for decoding.
func customDec(t reflect.Type) bool { return implementsOne(t, decodeMethods) }

// implementsOne reports whether t or *t implements one of ifaces, for a
// type other than time.Time and pointers.
func implementsOne(t reflect.Type, ifaces []reflect.Type) bool {
	if t == timeType || t.Kind() == reflect.Pointer {
		return false
	}
	pt := reflect.PointerTo(t)
	for _, i := range ifaces {
		if t.Implements(i) || pt.Implements(i) {
			return true
		}
	}
	return false
}

// encoder returns a function calling c's encoder: c.enc itself when c is
// complete, else a closure reading c.enc at each call (c is still being
// built: a recursive type). decoder and emptyFunc are the same.
func (c *codec) encoder() encFunc { return lateFunc(c, &c.enc) }

func (c *codec) decoder() decFunc { return lateFunc(c, &c.dec) }

// lateFunc returns *f, c's encoder or decoder, when c is complete, else a
// closure calling *f (see encoder).
func lateFunc[S any, F ~func(S, unsafe.Pointer) error](c *codec, f *F) F {
	if c.done {
		return *f
	}
	return func(s S, p unsafe.Pointer) error {
		if *f == nil {
			return errPending
		}
		return (*f)(s, p)
	}
}

func (c *codec) emptyFunc() func(unsafe.Pointer) bool {
	if c.done {
		return c.empty
	}
	return func(p unsafe.Pointer) bool { return c.empty != nil && c.empty(p) }
}

// errPending is what a probe meets in a recursive type whose codecs are
// not all built yet: it is probed again once they are.
var errPending = errors.New("codec: a type of the graph is still being built")

func (b *builder) build(t reflect.Type) *codec {
	if c, ok := codecs.Load(t); ok {
		return c.(*codec)
	}
	if c, ok := b.pending[t]; ok {
		return c
	}
	c := &codec{typ: t, size: t.Size()}
	b.pending[t] = c
	b.fill(c)
	if c.empty == nil {
		if t.Kind() == reflect.Struct { // a struct that cannot be listed
			c.empty = func(unsafe.Pointer) bool { return false }
		} else {
			c.empty = reflectEmpty(t)
		}
	}
	delete(b.pending, t)
	if b.probe(c) {
		c.done = true
	} else {
		// Probed again when the graph is complete; until then (and
		// for good) the graph reaches it through indirection, so that
		// what that probe decides is what everyone calls.
		b.deferred = append(b.deferred, c)
	}
	b.built = append(b.built, c)
	return c
}

// fill sets c's encoder, decoder and emptiness rule. A type msgpack/v5
// handles with methods of its own is handed to it, for encoding and
// decoding separately; its kind is compiled all the same, for the
// omitempty rule, which msgpack/v5 applies by kind whatever the methods.
func (b *builder) fill(c *codec) {
	t := c.typ
	if t == timeType {
		c.enc, c.dec, c.empty = encTime, decTime, emptyTime
		return
	}
	c.encFallback, c.decFallback = customEnc(t), customDec(t)
	enc, dec, bad := b.kind(c)
	if bad != nil {
		wanted := t.String()
		badDec := func(d *decoder, _ unsafe.Pointer) error {
			return &Error{Kind: ErrUnsupported, Offset: d.pos, Wanted: wanted, Err: bad}
		}
		if enc == nil {
			enc = func(*encoder, unsafe.Pointer) error {
				return &Error{Kind: ErrUnsupported, Offset: -1, Wanted: wanted, Err: bad}
			}
		}
		dec = badDec
		if !c.encFallback || !c.decFallback {
			c.bad = bad
		}
	}
	c.enc, c.dec = enc, dec
	if c.encFallback {
		c.enc = fallbackEnc(t)
	}
	if c.decFallback {
		c.dec = fallbackDec(t)
	}
	if t.Implements(isZeroerType) {
		c.empty = zeroerEmpty(t)
	}
}

// kind compiles t by its kind. bad is why it cannot be (then enc and
// dec are nil).
func (b *builder) kind(c *codec) (enc encFunc, dec decFunc, bad error) {
	t := c.typ
	if basicKind(t.Kind()) {
		k := basicCodecs[t.Kind()]
		c.empty = k.empty
		return k.enc, k.dec, nil
	}
	switch t.Kind() {
	case reflect.Slice:
		c.empty = func(p unsafe.Pointer) bool { return (*sliceHeader)(p).len == 0 }
		if t.Elem().Kind() == reflect.Uint8 {
			return encBytes, decBytes, nil
		}
		c.elem = b.build(t.Elem())
		enc, dec = b.slice(c)
		return enc, dec, nil
	case reflect.Array:
		n := t.Len()
		c.empty = func(unsafe.Pointer) bool { return n == 0 }
		if t.Elem().Kind() == reflect.Uint8 {
			enc, dec = byteArrayCodec(n)
			return enc, dec, nil
		}
		c.elem = b.build(t.Elem())
		enc, dec = b.array(c)
		return enc, dec, nil
	case reflect.Map:
		c.empty = func(p unsafe.Pointer) bool { return mapLen(t, p) == 0 }
		c.key = b.build(t.Key())
		c.elem = b.build(t.Elem())
		enc, dec = b.mapCodec(c)
		return enc, dec, nil
	case reflect.Pointer:
		c.empty = func(p unsafe.Pointer) bool { return *(*unsafe.Pointer)(p) == nil }
		c.elem = b.build(t.Elem())
		enc, dec = b.pointer(c)
		return enc, dec, nil
	case reflect.Interface:
		c.empty = func(p unsafe.Pointer) bool { return reflectEmptyValue(reflect.NewAt(t, p).Elem()) }
		if t.NumMethod() == 0 {
			return encAny, decAny, nil
		}
		// msgpack/v5 encodes an error as its message and another
		// interface as its dynamic value, and cannot decode either.
		bad = fmt.Errorf("%s: a non-empty interface cannot be decoded", t)
		if t == errorType {
			return encError, nil, bad
		}
		return encIface(t), nil, bad
	case reflect.Struct:
		return b.structCodec(c)
	}
	return nil, nil, fmt.Errorf("%s cannot be encoded", t)
}

// probe hands t to msgpack/v5 when msgpack/v5 encodes its zero value
// differently from the compiled encoder, or decodes those bytes into
// something else than the compiled decoder does. This is how types registered with msgpack.Register,
// RegisterExtEncoder or RegisterExtDecoder are found: registration
// leaves no trace a method set shows, but changes what msgpack/v5 writes
// or accepts for every value, the zero value included. (RegisterExt
// types implement msgpack.Marshaler and are found by customEnc first.)
// A registration whose encoder writes the default bytes for the zero
// value cannot be seen, and is compiled; so is a decoder registered
// alone, with which msgpack/v5 cannot read its own encoding of the type. Only named types and structs
// are probed: the others cannot carry a registration in practice.
func (b *builder) probe(c *codec) (complete bool) {
	t := c.typ
	if c.bad != nil || t == timeType || (c.encFallback && c.decFallback) {
		return true
	}
	// Pointer types are not probed, nor types that reach a pointer to
	// itself: msgpack/v5 recurses forever on `type P *P`.
	if t.Name() == "" && t.Kind() != reflect.Struct || t.Kind() == reflect.Pointer ||
		pointerLoop(t) {
		return true
	}
	zero := reflect.New(t)
	want, err := v5Encode(zero.Elem())
	if err != nil {
		return true // msgpack/v5 cannot encode it at all: nothing to follow
	}
	e := &encoder{}
	err = safeCall(c.enc, e, zero.UnsafePointer())
	if errors.Is(err, errPending) {
		return false
	}
	if err != nil || string(e.buf) != string(want) {
		if !c.encFallback {
			c.encFallback = true
			c.enc = fallbackEnc(t)
			probeFallbacks.Add(1)
		}
	}
	if !c.decFallback {
		// Decoding the zero value's bytes must give what msgpack/v5
		// gives (not the zero value: embedded pointers get allocated).
		v5got, ours := reflect.New(t), reflect.New(t)
		v5err := v5Decode(want, v5got.Elem())
		d := &decoder{data: want}
		err := safeCall(c.dec, d, ours.UnsafePointer())
		if errors.Is(err, errPending) {
			return false
		}
		// msgpack/v5 failing is no sign: it refuses some of the
		// exact conversions the codec makes (a repeated name can send
		// a float32 0 to an integer field).
		if v5err == nil && (err != nil || d.pos != len(want) ||
			!reflect.DeepEqual(v5got.Elem().Interface(), ours.Elem().Interface())) {
			c.decFallback = true
			c.dec = fallbackDec(t)
			probeFallbacks.Add(1)
		}
	}
	return true
}

// pointerLoop reports whether a pointer type reachable from t points to
// itself through pointers only (type P *P).
func pointerLoop(t reflect.Type) bool {
	return findType(t, func(t reflect.Type) (bool, []reflect.Type) {
		chain := map[reflect.Type]bool{}
		for u := t; u.Kind() == reflect.Pointer; u = u.Elem() {
			if chain[u] {
				return true, nil
			}
			chain[u] = true
		}
		return false, parts(t)
	})
}

// findType reports whether visit finds what it looks for in t or in a
// type reached from it, visiting each type once: visit returns found, or
// the types to visit next (usually parts).
func findType(t reflect.Type, visit func(reflect.Type) (found bool, next []reflect.Type)) bool {
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type) bool
	walk = func(t reflect.Type) bool {
		if seen[t] {
			return false
		}
		seen[t] = true
		found, next := visit(t)
		if found {
			return true
		}
		for _, u := range next {
			if walk(u) {
				return true
			}
		}
		return false
	}
	return walk(t)
}

// parts returns the types a value of t holds directly: the element of a
// pointer, slice or array, the key and element of a map, the fields of a
// struct (all of them, whatever their tags).
func parts(t reflect.Type) []reflect.Type {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return []reflect.Type{t.Elem()}
	case reflect.Map:
		return []reflect.Type{t.Key(), t.Elem()}
	case reflect.Struct:
		ts := make([]reflect.Type, t.NumField())
		for i := range ts {
			ts[i] = t.Field(i).Type
		}
		return ts
	}
	return nil
}

// safeCall runs f, an encoder or a decoder, turning a panic into an
// error.
func safeCall[S any, F ~func(S, unsafe.Pointer) error](f F, s S, p unsafe.Pointer) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f(s, p)
}

// Check reports whether values of type t can be saved and loaded. It
// refuses chan, func, complex64/128, unsafe.Pointer, uintptr and
// non-empty interface types (fmt.Stringer, error) anywhere in t, unless a
// type on the way handles its own decoding (msgpack.CustomDecoder,
// msgpack.Unmarshaler, encoding.BinaryUnmarshaler,
// encoding.TextUnmarshaler, on the type or its pointer), and struct tags
// msgpack/v5 cannot follow (inline on a non-struct, intern, a struct that
// embeds itself). Fields tagged `msgpack:"-"` and unexported fields are
// ignored, as msgpack/v5 ignores them. Recursive types are fine. The
// error is an *Error of kind ErrUnsupported naming the type and the
// field path, e.g. `Config.Hooks[]: func() cannot be encoded`.
func Check(t reflect.Type) error {
	if t == nil {
		return &Error{Kind: ErrUnsupported, Offset: -1, Msg: "nil type"}
	}
	seen := make(map[reflect.Type]bool)
	if msg := check(t, seen, t.String()); msg != "" {
		return &Error{Kind: ErrUnsupported, Offset: -1, Msg: msg}
	}
	return nil
}

func check(t reflect.Type, seen map[reflect.Type]bool, path string) string {
	if seen[t] {
		return ""
	}
	seen[t] = true
	if t == timeType || customDec(t) || basicKind(t.Kind()) {
		return ""
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return check(t.Elem(), seen, path+"[]")
	case reflect.Pointer:
		return check(t.Elem(), seen, path)
	case reflect.Map:
		if m := check(t.Key(), seen, path+"[key]"); m != "" {
			return m
		}
		return check(t.Elem(), seen, path+"[]")
	case reflect.Interface:
		if t.NumMethod() == 0 {
			return ""
		}
		return fmt.Sprintf("%s: %s (a non-empty interface) cannot be decoded", path, t)
	case reflect.Struct:
		b := &builder{pending: map[reflect.Type]*codec{}}
		si, err := b.fields(t)
		if err != nil {
			return fmt.Sprintf("%s: %v", path, err)
		}
		for _, f := range si.all {
			if m := check(f.typ, seen, path+"."+f.goName); m != "" {
				return m
			}
		}
		return ""
	}
	if path == t.String() { // t itself, not a part of it
		return fmt.Sprintf("%s cannot be encoded", t)
	}
	return fmt.Sprintf("%s: %s cannot be encoded", path, t)
}
