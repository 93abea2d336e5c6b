package codec

import (
	"errors"
	"fmt"
	"reflect"
	"unsafe"
)

// The field list of a struct follows msgpack/v5's getFields exactly:
//   - `msgpack:"-"` skips a field; unexported fields are skipped unless
//     embedded;
//   - a field named _msgpack sets as_array/asArray, and its omitempty
//     option applies to every field after it;
//   - the name is the tag's or the Go name; alias:NAME adds a second
//     name for decoding;
//   - an embedded field (without noinline) is inlined when tagged
//     inline, or else when it is a struct or a pointer to one that
//     msgpack/v5 encodes as a plain struct and none of its fields'
//     names is taken already; inlined fields whose names are taken are
//     dropped (inline) or stop the inlining (automatic). An inlined
//     embedded field is still decodable under its own name;
//   - a later field with a taken name is listed again (both are
//     encoded) and wins for decoding.

type fieldSpec struct {
	name      string
	goName    string
	index     []int
	typ       reflect.Type
	omitEmpty bool
}

type structSpec struct {
	list         []*fieldSpec
	byName       map[string]*fieldSpec
	all          []*fieldSpec // list, then fields reachable only by name
	asArray      bool
	hasOmitEmpty bool
}

func (s *structSpec) add(f *fieldSpec) {
	s.byName[f.name] = f
	s.list = append(s.list, f)
	s.all = append(s.all, f)
	if f.omitEmpty {
		s.hasOmitEmpty = true
	}
}

// types returns the types of every field of s.
func (s *structSpec) types() []reflect.Type {
	ts := make([]reflect.Type, len(s.all))
	for i, f := range s.all {
		ts[i] = f.typ
	}
	return ts
}

var errSelfEmbed = errors.New("a struct that embeds itself cannot be encoded")

// fields lists the fields of struct type t as msgpack/v5 does.
func (b *builder) fields(t reflect.Type) (*structSpec, error) {
	for _, u := range b.embedding {
		if u == t {
			return nil, errSelfEmbed
		}
	}
	b.embedding = append(b.embedding, t)
	defer func() { b.embedding = b.embedding[:len(b.embedding)-1] }()

	s := &structSpec{byName: make(map[string]*fieldSpec)}
	omitEmpty := false
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tg := fieldTag(sf)
		if tg.name == "-" {
			continue
		}
		if sf.Name == "_msgpack" {
			s.asArray = tg.has("as_array") || tg.has("asArray")
			if tg.has("omitempty") {
				omitEmpty = true
			}
		}
		if sf.PkgPath != "" && !sf.Anonymous {
			continue
		}
		if tg.has("intern") {
			return nil, fmt.Errorf("field %s: the intern option is not supported", sf.Name)
		}
		f := &fieldSpec{
			name:      tg.name,
			goName:    sf.Name,
			index:     []int{i},
			typ:       sf.Type,
			omitEmpty: omitEmpty || tg.has("omitempty"),
		}
		if f.name == "" {
			f.name = sf.Name
		}
		if sf.Anonymous && !tg.has("noinline") {
			inlined := false
			if tg.has("inline") {
				if sf.Type.Kind() != reflect.Struct {
					return nil, fmt.Errorf("field %s: inline applies to a struct, not %s", sf.Name, sf.Type)
				}
				inner, err := b.fields(sf.Type)
				if err != nil {
					return nil, err
				}
				for _, g := range inner.list {
					if _, taken := s.byName[g.name]; taken {
						continue
					}
					s.add(prefixed(f, g))
				}
				inlined = true
			} else {
				var err error
				if inlined, err = b.autoInline(s, f); err != nil {
					return nil, err
				}
			}
			if inlined {
				s.byName[f.name] = f
				s.all = append(s.all, f)
				continue
			}
		}
		s.add(f)
		if alias, ok := tg.options["alias"]; ok {
			s.byName[alias] = f
		}
	}
	return s, nil
}

// prefixed is g, a field of the struct embedded as f, seen from outside.
func prefixed(f, g *fieldSpec) *fieldSpec {
	h := *g
	h.index = append(append([]int(nil), f.index...), g.index...)
	return &h
}

// autoInline is msgpack/v5's shouldInline.
func (b *builder) autoInline(s *structSpec, f *fieldSpec) (bool, error) {
	t := f.typ
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || !plainStruct(t) {
		return false, nil
	}
	inner, err := b.fields(t)
	if err != nil {
		return false, err
	}
	for _, g := range inner.list {
		if _, taken := s.byName[g.name]; taken {
			return false, nil
		}
	}
	for _, g := range inner.list {
		s.add(prefixed(f, g))
	}
	return true, nil
}

// plainStruct reports whether msgpack/v5 encodes and decodes struct type
// t with its default struct code (no methods of its own, not time.Time).
// A registered type also fails to be plain for msgpack/v5; the probe of
// the embedding struct then hands the whole struct to msgpack/v5.
func plainStruct(t reflect.Type) bool {
	return t != timeType && !customEnc(t) && !customDec(t)
}

// step is one hop from a struct to one of its fields: a pointer to
// follow first (deref, for fields of an embedded *T), then an offset.
type step struct {
	off   uintptr
	deref bool
	alloc reflect.Type // the struct type deref points to
}

type field struct {
	name      string
	seg       string // path segment for errors, ".GoName"
	key       []byte // the name, msgpack-encoded
	steps     []step
	enc       encFunc
	dec       decFunc
	empty     func(unsafe.Pointer) bool
	omitEmpty bool
	c         *codec
	// canon: decoding by this field's name reaches this field (a later
	// field of the same name wins).
	canon bool
}

func stepsOf(t reflect.Type, index []int) []step {
	steps := make([]step, 0, len(index))
	for i, x := range index {
		var s step
		if i > 0 && t.Kind() == reflect.Pointer {
			s.deref = true
			t = t.Elem()
			s.alloc = t
		}
		sf := t.Field(x)
		s.off = sf.Offset
		steps = append(steps, s)
		t = sf.Type
	}
	return steps
}

// ptr returns the address of the field in the struct at p, or false if
// an embedded pointer on the way is nil.
func (f *field) ptr(p unsafe.Pointer) (unsafe.Pointer, bool) {
	if len(f.steps) == 1 {
		return unsafe.Add(p, f.steps[0].off), true
	}
	for _, s := range f.steps {
		if s.deref {
			p = *(*unsafe.Pointer)(p)
			if p == nil {
				return nil, false
			}
		}
		p = unsafe.Add(p, s.off)
	}
	return p, true
}

// ptrAlloc is ptr for decoding: nil embedded pointers get a new struct,
// as msgpack/v5's fieldByIndexAlloc does.
func (f *field) ptrAlloc(p unsafe.Pointer) unsafe.Pointer {
	if len(f.steps) == 1 {
		return unsafe.Add(p, f.steps[0].off)
	}
	for _, s := range f.steps {
		if s.deref {
			q := *(*unsafe.Pointer)(p)
			if q == nil {
				q = reflect.New(s.alloc).UnsafePointer()
				*(*unsafe.Pointer)(p) = q
			}
			p = q
		}
		p = unsafe.Add(p, s.off)
	}
	return p
}

type structCodec struct {
	t            reflect.Type
	wanted       string // t.String()
	list         []*field
	byName       map[string]*field
	asArray      bool
	hasOmitEmpty bool
	header       []byte // map (or array) header of the full list
}

func (b *builder) structCodec(c *codec) (encFunc, decFunc, error) {
	t := c.typ
	spec, err := b.fields(t)
	if err != nil {
		return nil, nil, err
	}
	sc := &structCodec{t: t, wanted: t.String(), asArray: spec.asArray, hasOmitEmpty: spec.hasOmitEmpty, byName: make(map[string]*field)}
	compiled := make(map[*fieldSpec]*field)
	for _, fs := range spec.all {
		fc := b.build(fs.typ)
		compiled[fs] = &field{
			name:      fs.name,
			seg:       "." + fs.goName,
			key:       appendString(nil, fs.name),
			steps:     stepsOf(t, fs.index),
			enc:       fc.encoder(),
			dec:       fc.decoder(),
			empty:     fc.emptyFunc(),
			omitEmpty: fs.omitEmpty,
			c:         fc,
		}
	}
	for _, fs := range spec.list {
		sc.list = append(sc.list, compiled[fs])
	}
	for name, fs := range spec.byName {
		sc.byName[name] = compiled[fs]
	}
	for _, f := range sc.list {
		f.canon = sc.byName[f.name] == f
	}
	if sc.asArray {
		sc.header = appendArrayLen(nil, len(sc.list))
	} else {
		sc.header = appendMapLen(nil, len(sc.list))
	}
	c.empty = sc.empty
	return sc.encode, sc.decode, nil
}

// omitted reports whether msgpack/v5 leaves f out: behind a nil embedded
// pointer, or omitempty and empty. Only structs with an omitempty field
// omit anything (msgpack/v5's fields.OmitEmpty).
func (f *field) omitted(p unsafe.Pointer) bool {
	fp, ok := f.ptr(p)
	return !ok || f.omitEmpty && f.empty(fp)
}

// empty is msgpack/v5's isEmptyValue for a struct: no field left after
// omission.
func (sc *structCodec) empty(p unsafe.Pointer) bool {
	if !sc.hasOmitEmpty {
		return len(sc.list) == 0
	}
	for _, f := range sc.list {
		if !f.omitted(p) {
			return false
		}
	}
	return true
}

func (sc *structCodec) encode(e *encoder, p unsafe.Pointer) error {
	if sc.asArray {
		e.buf = append(e.buf, sc.header...)
		for _, f := range sc.list {
			if err := sc.encodeField(e, f, p); err != nil {
				return err
			}
		}
		return nil
	}
	if !sc.hasOmitEmpty {
		e.buf = append(e.buf, sc.header...)
		for _, f := range sc.list {
			e.buf = append(e.buf, f.key...)
			if err := sc.encodeField(e, f, p); err != nil {
				return err
			}
		}
		return nil
	}
	// Count the fields kept first: the header comes before them.
	var small [64]bool
	var omit []bool
	if len(sc.list) <= len(small) {
		omit = small[:len(sc.list)]
	} else {
		omit = make([]bool, len(sc.list))
	}
	n := 0
	for i, f := range sc.list {
		omit[i] = f.omitted(p)
		if !omit[i] {
			n++
		}
	}
	e.buf = appendMapLen(e.buf, n)
	for i, f := range sc.list {
		if omit[i] {
			continue
		}
		e.buf = append(e.buf, f.key...)
		if err := sc.encodeField(e, f, p); err != nil {
			return err
		}
	}
	return nil
}

func (sc *structCodec) encodeField(e *encoder, f *field, p unsafe.Pointer) error {
	fp, ok := f.ptr(p)
	if !ok {
		e.buf = append(e.buf, 0xc0)
		return nil
	}
	if err := f.enc(e, fp); err != nil {
		return at(err, f.seg)
	}
	return nil
}

// decode reads a map (by field name: unknown names are skipped, a
// repeated name decodes again into the same field) or an array (the
// fields in order; its length must be that of the list). nil and the
// empty array zero the struct, as in msgpack/v5.
func (sc *structCodec) decode(d *decoder, p unsafe.Pointer) error {
	if d.pos < len(d.data) && arrayLens.starts(d.data[d.pos]) {
		return sc.decodeArray(d, p)
	}
	n, err := d.readLen(&mapLens, sc.wanted)
	if err != nil {
		return err
	}
	if n < 0 {
		reflect.NewAt(sc.t, p).Elem().SetZero()
		return nil
	}
	if err := d.enter(); err != nil {
		return err
	}
	next := 0 // the field expected next, for input in list order
	for i := 0; i < n; i++ {
		key, err := d.readKey("field name (string)")
		if err != nil {
			return err
		}
		var f *field
		if next < len(sc.list) && sc.list[next].canon && sc.list[next].name == string(key) {
			f = sc.list[next]
			next++
		} else {
			f = sc.byName[string(key)]
		}
		if f == nil {
			if err := d.skip(); err != nil {
				return err
			}
			continue
		}
		if err := f.dec(d, f.ptrAlloc(p)); err != nil {
			return at(err, f.seg)
		}
	}
	d.depth--
	return nil
}

// decodeArray reads the fields in order from an array.
func (sc *structCodec) decodeArray(d *decoder, p unsafe.Pointer) error {
	start := d.pos
	n, err := d.readLen(&arrayLens, sc.wanted)
	if err != nil {
		return err
	}
	if n == 0 {
		reflect.NewAt(sc.t, p).Elem().SetZero()
		return nil
	}
	if n != len(sc.list) {
		return &Error{Kind: ErrMismatch, Offset: start, Stored: describe(d.data, start), Wanted: sc.wanted,
			Msg: fmt.Sprintf("an array-encoded struct needs %d fields", len(sc.list))}
	}
	if err := d.enter(); err != nil {
		return err
	}
	for _, f := range sc.list {
		if err := f.dec(d, f.ptrAlloc(p)); err != nil {
			return at(err, f.seg)
		}
	}
	d.depth--
	return nil
}

// LostField returns the Go name of a field of struct type t that an
// encoding and decoding of t does not carry, as msgpack/v5 does neither:
// one left out (unexported and not embedded, or tagged `msgpack:"-"`),
// dropped when its embedded struct was inlined, or decoded into a later
// field of the same name; "" when every field is carried (embedded
// structs inlined are looked into; those that are not are carried whole,
// as one field). A type encoded and decoded by methods of its own
// carries what they write: "". The error is that of a struct that embeds
// itself.
func LostField(t reflect.Type) (string, error) {
	if t.Kind() != reflect.Struct || customEnc(t) && customDec(t) {
		return "", nil
	}
	spec, err := (&builder{}).fields(t)
	if err != nil {
		return "", err
	}
	covered := make(map[string]bool, len(spec.list))
	seen := make(map[string]bool, len(spec.list))
	for i := len(spec.list) - 1; i >= 0; i-- {
		f := spec.list[i]
		if seen[f.name] { // a later field of the name is decoded instead
			return f.goName, nil
		}
		seen[f.name] = true
		covered[fmt.Sprint(f.index)] = true
	}
	var walk func(t reflect.Type, prefix []int) string
	walk = func(t reflect.Type, prefix []int) string {
		for i := range t.NumField() {
			sf := t.Field(i)
			index := append(append([]int(nil), prefix...), i)
			if covered[fmt.Sprint(index)] {
				continue
			}
			ft := sf.Type
			for ft.Kind() == reflect.Pointer { // inlined through pointers too (autoInline)
				ft = ft.Elem()
			}
			if sf.Anonymous && ft.Kind() == reflect.Struct { // inlined, if not listed whole
				if lost := walk(ft, index); lost != "" {
					return lost
				}
				continue
			}
			return sf.Name
		}
		return ""
	}
	return walk(t, nil), nil
}
