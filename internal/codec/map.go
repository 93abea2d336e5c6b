package codec

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"unsafe"
)

// mapLen returns the length of the map of type t at p.
func mapLen(t reflect.Type, p unsafe.Pointer) int {
	if *(*unsafe.Pointer)(p) == nil {
		return 0
	}
	return reflect.NewAt(t, p).Elem().Len()
}

// mapSlots are a key and a value variable that map entries are copied
// into (encoding) or decoded into (decoding); pooled per map type so
// that a map costs no allocation per entry.
type mapSlots struct {
	k, v   reflect.Value // addressable
	kp, vp unsafe.Pointer
	it     reflect.MapIter
}

type mapCodec struct {
	t              reflect.Type
	wanted         string // t.String()
	key, elem      *codec
	keyEnc, valEnc encFunc
	keyDec, valDec decFunc
	slots          sync.Pool
	// fresh: msgpack/v5 decodes map[string]interface{} into a new map
	// every time, where other maps get entries added to them.
	fresh bool
	// zeroKey/zeroVal: the slot must be zeroed before decoding into it
	// (the decoder of the type merges into what is there).
	zeroKey, zeroVal bool
	// hashPanics: inserting a decoded key may panic (an interface
	// holding an unhashable value); the panic becomes a mismatch. Such
	// keys are refused when encoding (see checkKey).
	hashPanics bool
	// slotBytes approximates the map memory per entry.
	slotBytes uintptr
	// touchKey/touchVal read the first byte of each string a key or
	// value holds directly (nil if none): see encodeGrouped.
	touchKey, touchVal func(unsafe.Pointer) uintptr
	groups             sync.Pool // *mapGroup
}

// touchGroup is the number of map entries encodeGrouped copies out, and
// touches, before encoding them.
const touchGroup = 32

// mapGroup holds touchGroup entries copied out of a map.
type mapGroup struct {
	keys, vals reflect.Value   // [touchGroup]K, [touchGroup]V, addressable
	ks, vs     []reflect.Value // their elements
	kp, vp     unsafe.Pointer
	it         reflect.MapIter
}

func touchString(p unsafe.Pointer) uintptr {
	s := *(*string)(p)
	if len(s) == 0 {
		return 0
	}
	return uintptr(s[0])
}

// touchFor returns a function reading the first byte of every string a
// value of t holds directly (t itself, or string fields of a struct), or
// nil if there is none.
func touchFor(t reflect.Type) func(unsafe.Pointer) uintptr {
	switch {
	case t.Kind() == reflect.String:
		return touchString
	case t.Kind() == reflect.Struct:
		var offs []uintptr
		for i := range t.NumField() {
			if f := t.Field(i); f.Type.Kind() == reflect.String {
				offs = append(offs, f.Offset)
			}
		}
		if len(offs) == 0 {
			return nil
		}
		return func(p unsafe.Pointer) (x uintptr) {
			for _, o := range offs {
				x += touchString(unsafe.Add(p, o))
			}
			return x
		}
	}
	return nil
}

func (b *builder) mapCodec(c *codec) (encFunc, decFunc) {
	t := c.typ
	m := &mapCodec{
		t: t, wanted: t.String(), key: c.key, elem: c.elem,
		keyEnc: c.key.encoder(), valEnc: c.elem.encoder(),
		keyDec: c.key.decoder(), valDec: c.elem.decoder(),
		fresh:      t.Key() == stringType && t.Elem() == anyType,
		zeroKey:    !overwrites(t.Key()),
		zeroVal:    !overwrites(t.Elem()),
		hashPanics: hasInterface(t.Key()),
		slotBytes:  t.Key().Size() + min(t.Elem().Size(), 128) + 8,
	}
	m.touchKey, m.touchVal = touchFor(t.Key()), touchFor(t.Elem())
	m.groups.New = func() any {
		g := &mapGroup{
			keys: reflect.New(reflect.ArrayOf(touchGroup, t.Key())).Elem(),
			vals: reflect.New(reflect.ArrayOf(touchGroup, t.Elem())).Elem(),
		}
		g.kp, g.vp = g.keys.Addr().UnsafePointer(), g.vals.Addr().UnsafePointer()
		for i := range touchGroup {
			g.ks = append(g.ks, g.keys.Index(i))
			g.vs = append(g.vs, g.vals.Index(i))
		}
		return g
	}
	m.slots.New = func() any {
		s := &mapSlots{k: reflect.New(t.Key()).Elem(), v: reflect.New(t.Elem()).Elem()}
		s.kp, s.vp = s.k.Addr().UnsafePointer(), s.v.Addr().UnsafePointer()
		return s
	}
	return m.encode, m.decode
}

// putSlots zeroes s and returns it to the pool, on every return, failed
// or not: an entry left in it would be kept alive, and a pointer left in
// an interface would be decoded through by the next decode that gets s.
func (m *mapCodec) putSlots(s *mapSlots) {
	s.k.SetZero()
	s.v.SetZero()
	m.slots.Put(s)
}

// overwrites reports whether decoding a value of type t replaces it
// whole, whatever it held.
func overwrites(t reflect.Type) bool {
	if t == timeType || customDec(t) {
		return t == timeType
	}
	if t.Kind() == reflect.Interface {
		return t.NumMethod() == 0
	}
	return basicKind(t.Kind())
}

// hasInterface reports whether a value of t may hold an interface (in
// itself, not behind a pointer, slice or map).
func hasInterface(t reflect.Type) bool {
	return findType(t, func(t reflect.Type) (bool, []reflect.Type) {
		switch t.Kind() {
		case reflect.Interface:
			return true, nil
		case reflect.Array, reflect.Struct:
			return false, parts(t)
		}
		return false, nil
	})
}

func (m *mapCodec) encode(e *encoder, p unsafe.Pointer) error {
	if *(*unsafe.Pointer)(p) == nil {
		e.buf = append(e.buf, 0xc0)
		return nil
	}
	mv := reflect.NewAt(m.t, p).Elem()
	n := mv.Len()
	e.buf = appendMapLen(e.buf, n)
	if n == 0 {
		return nil
	}
	if err := e.enter(); err != nil {
		return err
	}
	if e.par && n >= parMinElems && parallelOK() {
		err := m.encodeParallel(e, mv, n)
		e.depth--
		return err
	}
	if m.touchKey != nil || m.touchVal != nil {
		err := m.encodeGrouped(e, mv, n)
		if err == nil {
			e.depth--
		}
		return err
	}
	s := m.slots.Get().(*mapSlots)
	defer m.putSlots(s)
	s.it.Reset(mv)
	defer s.it.Reset(reflect.Value{})
	written := 0
	for s.it.Next() {
		if written == n {
			written++ // the map grew: fail below
			break
		}
		s.k.SetIterKey(&s.it)
		s.v.SetIterValue(&s.it)
		if err := m.encodeKey(e, s.kp); err != nil {
			return at(err, "{key}")
		}
		if err := m.valEnc(e, s.vp); err != nil {
			return at(err, keySeg(s.k))
		}
		written++
		if err := e.flushFull(); err != nil {
			return err
		}
	}
	if written != n {
		return m.changed(fmt.Sprintf(" (%d entries, then %d)", n, written))
	}
	e.depth--
	return nil
}

// encodeGrouped encodes the n entries of mv (header written) in groups:
// it copies touchGroup entries out, reads the first byte of each of
// their strings, then encodes them. Map order is unrelated to where the
// strings lie in memory, so each string is a cache miss; the reads of a
// group are independent of each other, so the processor overlaps their
// misses, where encoding entry by entry waits for one at a time.
func (m *mapCodec) encodeGrouped(e *encoder, mv reflect.Value, n int) error {
	g := m.groups.Get().(*mapGroup)
	defer m.groups.Put(g)
	g.it.Reset(mv)
	defer func() {
		g.it.Reset(reflect.Value{})
		g.keys.SetZero()
		g.vals.SetZero()
	}()
	ksize, vsize := m.key.size, m.elem.size
	written := 0
	for more := true; more; {
		cnt := 0
		for cnt < touchGroup {
			if more = g.it.Next(); !more {
				break
			}
			if written+cnt == n {
				return m.changed(fmt.Sprintf(" (%d entries, then more)", n))
			}
			g.ks[cnt].SetIterKey(&g.it)
			g.vs[cnt].SetIterValue(&g.it)
			cnt++
		}
		e.touched += m.touch(g.kp, g.vp, cnt)
		for j := range cnt {
			kp := unsafe.Add(g.kp, uintptr(j)*ksize)
			if err := m.encodeKey(e, kp); err != nil {
				return at(err, "{key}")
			}
			if err := m.valEnc(e, unsafe.Add(g.vp, uintptr(j)*vsize)); err != nil {
				return at(err, keySeg(g.ks[j]))
			}
		}
		written += cnt
		if err := e.flushFull(); err != nil {
			return err
		}
	}
	if written != n {
		return m.changed(fmt.Sprintf(" (%d entries, then %d)", n, written))
	}
	return nil
}

// touch reads the strings of cnt entries at kp and vp (see
// encodeGrouped); the sum only keeps the reads from being dropped.
func (m *mapCodec) touch(kp, vp unsafe.Pointer, cnt int) (x uintptr) {
	ksize, vsize := m.key.size, m.elem.size
	for j := range cnt {
		if m.touchKey != nil {
			x += m.touchKey(unsafe.Add(kp, uintptr(j)*ksize))
		}
		if m.touchVal != nil {
			x += m.touchVal(unsafe.Add(vp, uintptr(j)*vsize))
		}
	}
	return x
}

// keySeg formats a map key as a path segment: ["bob"], [3].
func keySeg(k reflect.Value) string {
	if k.Kind() == reflect.String {
		return fmt.Sprintf("[%q]", k.String())
	}
	if k.CanInterface() {
		return fmt.Sprintf("[%v]", k.Interface())
	}
	return "[?]"
}

// presize is the size a decoded map is created with: its final length,
// unless that would take more memory than the input backs many times
// over (then the map grows as entries arrive).
func (m *mapCodec) presize(n, remaining int) int {
	if limit := maxPrealloc(remaining) * 2; uintptr(n)*m.slotBytes > limit {
		return int(limit / m.slotBytes)
	}
	return n
}

func (m *mapCodec) decode(d *decoder, p unsafe.Pointer) error {
	start := d.pos
	n, err := d.readLen(&mapLens, m.wanted)
	if err != nil {
		return err
	}
	if n < 0 {
		*(*unsafe.Pointer)(p) = nil
		return nil
	}
	size := m.presize(n, d.remaining())
	if d.par && n >= parMinElems && parallelOK() && delimited(m.t.Key()) && delimited(m.t.Elem()) {
		if err := d.enter(); err != nil {
			return err
		}
		// A new map is made on another goroutine meanwhile: making it
		// touches all its memory, which is slow the first time.
		made := make(chan reflect.Value, 1)
		if m.fresh || *(*unsafe.Pointer)(p) == nil {
			go func() { made <- reflect.MakeMapWithSize(m.t, size) }()
		} else {
			made <- reflect.NewAt(m.t, p).Elem()
		}
		err := m.decodeParallel(d, func() reflect.Value {
			mv := <-made
			*(*unsafe.Pointer)(p) = mv.UnsafePointer()
			return mv
		}, n)
		if err != errSerial {
			if err == nil {
				d.depth--
			}
			return err
		}
		d.depth-- // entered again below
	} else if m.fresh || *(*unsafe.Pointer)(p) == nil {
		mv := reflect.MakeMapWithSize(m.t, size)
		*(*unsafe.Pointer)(p) = mv.UnsafePointer()
	}
	if n == 0 {
		return nil
	}
	if err := d.enter(); err != nil {
		return err
	}
	mv := reflect.NewAt(m.t, p).Elem()
	s := m.slots.Get().(*mapSlots)
	defer m.putSlots(s)
	for i := 0; i < n; i++ {
		if err := m.decodeEntry(d, s); err != nil {
			return err
		}
		if err := m.insert(mv, s.k, s.v, d, start); err != nil {
			return err
		}
	}
	d.depth--
	return nil
}

// decodeEntry decodes one key and value into the slots.
func (m *mapCodec) decodeEntry(d *decoder, s *mapSlots) error {
	if m.zeroKey {
		s.k.SetZero()
	}
	if err := m.keyDec(d, s.kp); err != nil {
		return at(err, "{key}")
	}
	if m.zeroVal {
		s.v.SetZero()
	}
	if err := m.valDec(d, s.vp); err != nil {
		return at(err, keySeg(s.k))
	}
	return nil
}

// changed is the error of a map that changed while it was encoded (how,
// if detail is not ""): the program wrote it during the encoding.
func (m *mapCodec) changed(detail string) error {
	return &Error{Kind: ErrUnsupported, Offset: -1, Wanted: m.t.String(),
		Msg: "the map changed while it was encoded" + detail + ": it was written during the encoding; do not change a value in place once it is handed over to be saved, build a new one"}
}

// encodeKey encodes the key at kp and checks it (checkKey) on the bytes
// it wrote. Those bytes must all be in e.buf: a key may hold a long slice
// (a pointer to a struct with one, in an interface), whose encoder would
// write e.buf out as it fills, and with it the start of the key. So the
// key is encoded with e.w unset, into e.buf whole; the next flush between
// entries writes it.
func (m *mapCodec) encodeKey(e *encoder, kp unsafe.Pointer) error {
	if !m.hashPanics {
		return m.keyEnc(e, kp)
	}
	w, start := e.w, len(e.buf)
	e.w = nil
	err := m.keyEnc(e, kp)
	e.w = w
	if err != nil {
		return err
	}
	return m.checkKey(kp, e.buf[start:])
}

// checkKey refuses a key whose encoding enc would not load back as a
// map key: one holding an interface whose dynamic value decodes as a
// []interface{}, a map[string]interface{} or a []byte (an array, a
// struct, a pointer to one, a [N]byte), which cannot be hashed. Such a
// map saves, but no decoder (the codec's or msgpack/v5's) can load it
// again, so it is an ErrUnsupported error (ErrNeverLoads) naming the
// key's type. Only keys that hold interfaces come here (encodeKey); an
// interface key whose encoding is a scalar is hashable as decoded;
// others are decoded here, as a load would, and hashed. The bytes
// written are not changed.
func (m *mapCodec) checkKey(kp unsafe.Pointer, enc []byte) error {
	if len(enc) == 0 {
		return nil
	}
	if m.t.Key().Kind() == reflect.Interface {
		switch c := enc[0]; {
		case c <= 0x7f || c >= 0xe0 || c >= 0xa0 && c <= 0xbf, // fixint, fixstr
			c == 0xc0 || c == 0xc2 || c == 0xc3,            // nil, bool
			c >= 0xca && c <= 0xd3, c >= 0xd9 && c <= 0xdb: // numbers, str
			return nil
		}
	}
	back := reflect.New(m.t.Key())
	err := safeCall(m.keyDec, &decoder{data: enc}, back.UnsafePointer())
	var why string
	switch {
	case err != nil:
		why = fmt.Sprintf("does not decode (%v)", err)
	case !hashable(back.Elem()):
		why = fmt.Sprintf("loads as %s, which cannot be a map key", describeLoaded(back.Elem()))
	default:
		return nil
	}
	k := reflect.NewAt(m.t.Key(), kp).Elem()
	what := k.Type().String()
	if k.Kind() == reflect.Interface && !k.IsNil() {
		what = fmt.Sprintf("%s (in %s)", k.Elem().Type(), k.Type())
	}
	return &Error{Kind: ErrUnsupported, Offset: -1, Wanted: m.t.String(),
		Msg: fmt.Sprintf("a key of type %s %s: the map would save but never load; use keys of a string, bool or number type (fmt.Sprint of the key, say)", what, why),
		Err: errUnloadableKey, cause: ErrNeverLoads}
}

// errUnloadableKey is the cause of checkKey's errors.
var errUnloadableKey = errors.New("map key cannot be loaded")

// hashable reports whether v can be a map key: hashing it does not panic.
func hashable(v reflect.Value) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	_ = map[any]bool{v.Interface(): true}
	return true
}

// describeLoaded names the type of a decoded key, or of the interface
// inside it that cannot be hashed.
func describeLoaded(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Interface:
		if !v.IsNil() {
			return describeLoaded(v.Elem())
		}
	case reflect.Array:
		for i := range v.Len() {
			if !hashable(v.Index(i)) {
				return describeLoaded(v.Index(i))
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Field(i); f.CanInterface() && !hashable(f) {
				return describeLoaded(f)
			}
		}
	}
	return v.Type().String()
}

// insert stores an entry; a key that cannot be hashed (an interface
// holding a map or slice, which msgpack/v5 panics on) is a mismatch.
func (m *mapCodec) insert(mv, k, v reflect.Value, d *decoder, start int) (err error) {
	if m.hashPanics {
		defer func() {
			if r := recover(); r != nil {
				err = &Error{Kind: ErrMismatch, Offset: start, Wanted: m.t.String(), Msg: fmt.Sprintf("map key cannot be used: %v", r)}
			}
		}()
	}
	mv.SetMapIndex(k, v)
	return nil
}
