package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// FuzzDifferential builds a random Go type and a random value of it from
// the input and requires, with msgpack/v5 as the oracle:
//   - the codec writes msgpack/v5's bytes (exactly when the value holds
//     no map of two or more entries; else the same bytes once every
//     map's entries are sorted, Go map order being random);
//   - both decoders, fed both encodings, give equal values (NaN equal to
//     NaN) or both fail;
//   - decoding into a type whose numbers have other kinds and widths,
//     the codec refuses with ErrMismatch exactly where the stored number
//     does not fit (checked here by an independent rule, where
//     msgpack/v5 cuts), and accepts what fits.
func FuzzDifferential(f *testing.F) {
	for _, s := range []string{
		"", "\x00", "\x01\x02\x03", "\x05\x05\x05\x05\x05\x05", "\x0a\x01\x02\x03\x04\x05\x06\x07\x08",
		"\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09", "\x0b\x0c\x0d\x0e\x0f\x10\x11\x12",
		"\x08\x03\x07\x01\xff\xfe\xfd\x80\x7f", "\x0c\x0c\x0c\x00\x00\x00\x01\xff\xff\xff\xff\xff",
		strings.Repeat("\x0c\x02", 20), strings.Repeat("\x0d\x01\x03", 20), strings.Repeat("\xf0\x13\x37", 30),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &src{data: data}
		typ := s.typ(0)
		g := &gen{s: s}
		v := g.value(typ, 0)
		differential(t, typ, v, g.multiMap)
		alt := s.retype(typ)
		if alt != typ {
			crossDecode(t, typ, v, alt)
		}
	})
}

// src draws choices from the fuzz input; past its end every choice is 0.
type src struct {
	data []byte
	i    int
}

func (s *src) byte() byte {
	if s.i >= len(s.data) {
		return 0
	}
	b := s.data[s.i]
	s.i++
	return b
}

func (s *src) intn(n int) int { return int(s.byte()) % n }

func (s *src) u64() uint64 {
	var b [8]byte
	for i := range b {
		b[i] = s.byte()
	}
	return binary.LittleEndian.Uint64(b[:])
}

// Named types for the fuzzer (reflect cannot create named types).
type (
	FzInt    int
	FzInt8   int8
	FzUint16 uint16
	FzString string
	FzBytes  []byte
	FzFloat  float32
	FzBool   bool
	// EmbA embeds Base, whose ID it shadows.
	EmbA struct {
		ID string `msgpack:",omitempty"`
		Z  []int8
		Base
	}
	EmbB struct {
		Q uint16    `msgpack:"a"`
		T time.Time `msgpack:",omitempty"`
		P *int64
	}
)

var (
	scalarTypes = []reflect.Type{
		reflect.TypeFor[bool](), reflect.TypeFor[int](), reflect.TypeFor[int8](), reflect.TypeFor[int16](),
		reflect.TypeFor[int32](), reflect.TypeFor[int64](), reflect.TypeFor[uint](), reflect.TypeFor[uint8](),
		reflect.TypeFor[uint16](), reflect.TypeFor[uint32](), reflect.TypeFor[uint64](), reflect.TypeFor[float32](),
		reflect.TypeFor[float64](), reflect.TypeFor[string](), reflect.TypeFor[[]byte](), reflect.TypeFor[time.Time](),
		anyType, reflect.TypeFor[[3]byte](), reflect.TypeFor[FzInt](), reflect.TypeFor[FzInt8](),
		reflect.TypeFor[FzUint16](), reflect.TypeFor[FzString](), reflect.TypeFor[FzBytes](), reflect.TypeFor[FzFloat](),
		reflect.TypeFor[FzBool](), reflect.TypeFor[time.Duration](),
	}
	keyTypes = []reflect.Type{
		reflect.TypeFor[string](), reflect.TypeFor[int](), reflect.TypeFor[int8](), reflect.TypeFor[uint16](),
		reflect.TypeFor[uint64](), reflect.TypeFor[float64](), reflect.TypeFor[bool](), reflect.TypeFor[FzString](),
		reflect.TypeFor[[2]int8](), reflect.TypeFor[inner](), anyType, reflect.TypeFor[float32](),
	}
	embedTypes = []reflect.Type{
		reflect.TypeFor[Base](), reflect.TypeFor[*Base](), reflect.TypeFor[EmbA](), reflect.TypeFor[*EmbA](),
		reflect.TypeFor[EmbB](), reflect.TypeFor[*EmbB](),
	}
	tagNames   = []string{"", "", "", "a", "b", "ID", "Name", "F0", "F1", "-"}
	tagOptions = []string{"omitempty", "alias:a", "alias:c", "alias:F0", "noinline", "inline"}
)

// typ draws a type.
func (s *src) typ(depth int) reflect.Type {
	k := s.intn(16)
	if depth >= 4 {
		k = 0
	}
	switch k {
	case 9, 10:
		return reflect.SliceOf(s.typ(depth + 1))
	case 11:
		return reflect.ArrayOf(s.intn(4), s.typ(depth+1))
	case 12:
		return reflect.MapOf(keyTypes[s.intn(len(keyTypes))], s.typ(depth+1))
	case 13:
		return reflect.PointerTo(s.typ(depth + 1))
	case 14, 15:
		return s.structType(depth)
	}
	return scalarTypes[s.intn(len(scalarTypes))]
}

func (s *src) tag(embedded bool) reflect.StructTag {
	name := tagNames[s.intn(len(tagNames))]
	var opts []string
	for n := s.intn(3); n > 0; n-- {
		o := tagOptions[s.intn(len(tagOptions))]
		if (o == "inline" || o == "noinline") && !embedded {
			continue
		}
		opts = append(opts, o)
	}
	if name == "" && len(opts) == 0 {
		return ""
	}
	return reflect.StructTag(`msgpack:"` + strings.Join(append([]string{name}, opts...), ",") + `"`)
}

func (s *src) structType(depth int) reflect.Type {
	var fields []reflect.StructField
	used := map[string]bool{}
	for n := 1 + s.intn(5); n > 0; n-- {
		if s.intn(6) == 0 {
			et := embedTypes[s.intn(len(embedTypes))]
			name := et.Name()
			if et.Kind() == reflect.Pointer {
				name = et.Elem().Name()
			}
			if used[name] {
				continue
			}
			used[name] = true
			tg := s.tag(true)
			if et.Kind() == reflect.Pointer && strings.Contains(string(tg), "inline") && !strings.Contains(string(tg), "noinline") {
				tg = "" // msgpack/v5 panics on inline of a pointer
			}
			fields = append(fields, reflect.StructField{Name: name, Type: et, Anonymous: true, Tag: tg})
			continue
		}
		name := fmt.Sprintf("F%d", len(fields))
		if used[name] {
			continue
		}
		used[name] = true
		fields = append(fields, reflect.StructField{Name: name, Type: s.typ(depth + 1), Tag: s.tag(false)})
	}
	return reflect.StructOf(fields)
}

// retype returns t with other numeric kinds and widths, drawn.
func (s *src) retype(t reflect.Type) reflect.Type {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		if t.Name() != "" && t.PkgPath() != "" {
			return t // named: keep
		}
		nums := []reflect.Type{
			reflect.TypeFor[int](), reflect.TypeFor[int8](), reflect.TypeFor[int16](), reflect.TypeFor[int32](),
			reflect.TypeFor[int64](), reflect.TypeFor[uint](), reflect.TypeFor[uint8](), reflect.TypeFor[uint16](),
			reflect.TypeFor[uint32](), reflect.TypeFor[uint64](), reflect.TypeFor[float32](), reflect.TypeFor[float64](),
		}
		return nums[s.intn(len(nums))]
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return t
		}
		if e := s.retype(t.Elem()); e != t.Elem() {
			return reflect.SliceOf(e)
		}
	case reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return t
		}
		if e := s.retype(t.Elem()); e != t.Elem() {
			return reflect.ArrayOf(t.Len(), e)
		}
	case reflect.Pointer:
		if e := s.retype(t.Elem()); e != t.Elem() {
			return reflect.PointerTo(e)
		}
	case reflect.Map:
		k, e := t.Key(), s.retype(t.Elem())
		if k.Kind() != reflect.Float32 && k.Kind() != reflect.Float64 {
			// Float keys stay: NaN keys do not compare.
			k = s.retype(k)
		}
		if k != t.Key() || e != t.Elem() {
			return reflect.MapOf(k, e)
		}
	case reflect.Struct:
		if t.Name() != "" {
			return t
		}
		fields := make([]reflect.StructField, t.NumField())
		changed := false
		for i := range fields {
			fields[i] = t.Field(i)
			fields[i].Index, fields[i].Offset = nil, 0
			if !fields[i].Anonymous {
				if nt := s.retype(fields[i].Type); nt != fields[i].Type {
					fields[i].Type, changed = nt, true
				}
			}
		}
		if changed {
			return reflect.StructOf(fields)
		}
	}
	return t
}

// gen draws values.
type gen struct {
	s *src
	// multiMap: the value holds a map of two entries or more.
	multiMap bool
}

var interestingInts = []uint64{0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000,
	0xffffffff, 1 << 32, 1<<53 + 1, 1<<63 - 1, 1 << 63, math.MaxUint64, 1<<64 - 32, 1<<64 - 33, 1<<64 - 128, 1<<64 - 129}

func (g *gen) u64() uint64 {
	if g.s.intn(2) == 0 {
		return interestingInts[g.s.intn(len(interestingInts))]
	}
	return g.s.u64()
}

func (g *gen) float() float64 {
	switch g.s.intn(8) {
	case 0:
		return math.NaN()
	case 1:
		return math.Inf(1 - 2*g.s.intn(2))
	case 2:
		return math.Copysign(0, -1)
	case 3:
		return float64(int64(g.u64()))
	case 4:
		return float64(g.s.intn(256)) - 128
	}
	return math.Float64frombits(g.s.u64())
}

func (g *gen) str() string {
	switch g.s.intn(8) {
	case 0:
		return strings.Repeat("s", 31+g.s.intn(3))
	case 1:
		return strings.Repeat("é", 127+g.s.intn(3))
	}
	n := g.s.intn(6)
	b := make([]byte, n)
	for i := range b {
		const alphabet = "abcFIDNme\x00\xff"
		b[i] = alphabet[g.s.intn(len(alphabet))]
	}
	return string(b)
}

func (g *gen) time() time.Time {
	var sec int64
	switch g.s.intn(5) {
	case 0:
		return time.Time{}
	case 1:
		sec = int64(g.s.u64() % (1 << 32))
	case 2:
		sec = int64(g.s.u64() % (1 << 34))
	case 3:
		sec = int64(g.s.u64()%(1<<40)) - 1<<39
	default:
		sec = int64(g.u64() % (1 << 60))
	}
	nsec := int64(0)
	if g.s.intn(2) == 0 {
		nsec = int64(g.s.u64() % 1e9)
	}
	locs := []*time.Location{time.UTC, time.Local, time.FixedZone("Z", -7200)}
	return time.Unix(sec, nsec).In(locs[g.s.intn(3)])
}

// dynamicInts are the integer types dynamic draws, by draw: each holds
// g.u64() converted (cut to its width).
var dynamicInts = map[int]reflect.Type{
	2: reflect.TypeFor[int](), 3: reflect.TypeFor[int8](), 4: reflect.TypeFor[int16](),
	5: reflect.TypeFor[int32](), 6: reflect.TypeFor[int64](), 7: reflect.TypeFor[uint8](),
	8: reflect.TypeFor[uint64](), 19: reflect.TypeFor[uint16](),
}

// dynamic draws a value for an interface.
func (g *gen) dynamic(depth int) any {
	if depth > 4 {
		return nil
	}
	draw := g.s.intn(20)
	if t, ok := dynamicInts[draw]; ok {
		return reflect.ValueOf(g.u64()).Convert(t).Interface()
	}
	switch draw {
	case 0:
		return nil
	case 1:
		return g.s.intn(2) == 0
	case 9:
		return float32(g.float())
	case 10:
		return g.float()
	case 11:
		return g.str()
	case 12:
		if g.s.intn(2) == 0 {
			return []byte(nil)
		}
		return []byte(g.str())
	case 13:
		return g.time()
	case 14:
		n := g.s.intn(4)
		l := make([]any, n)
		for i := range l {
			l[i] = g.dynamic(depth + 1)
		}
		return l
	case 15:
		n := g.s.intn(4)
		if n >= 2 {
			g.multiMap = true
		}
		m := make(map[string]any, n)
		for range n {
			m[g.str()] = g.dynamic(depth + 1)
		}
		return m
	case 16:
		return Base{ID: int(g.u64()), Name: g.str()}
	case 17:
		return &Base{ID: 1}
	}
	return []string{g.str()} // 18
}

// value draws a value of t.
func (g *gen) value(t reflect.Type, depth int) reflect.Value {
	v := reflect.New(t).Elem()
	g.fill(v, depth)
	return v
}

func (g *gen) fill(v reflect.Value, depth int) {
	t := v.Type()
	if t == timeType {
		v.Set(reflect.ValueOf(g.time()))
		return
	}
	switch t.Kind() {
	case reflect.Bool:
		v.SetBool(g.s.intn(2) == 1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(g.u64()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(g.u64())
	case reflect.Float32, reflect.Float64:
		v.SetFloat(g.float())
	case reflect.String:
		v.SetString(g.str())
	case reflect.Interface:
		if x := g.dynamic(depth); x != nil {
			v.Set(reflect.ValueOf(x))
		}
	case reflect.Slice:
		switch g.s.intn(4) {
		case 0: // nil
		case 1:
			v.Set(reflect.MakeSlice(t, 0, 0))
		default:
			if t.Elem().Kind() == reflect.Uint8 {
				v.SetBytes([]byte(g.str()))
				return
			}
			n := 1 + g.s.intn(3)
			v.Set(reflect.MakeSlice(t, n, n))
			for i := range n {
				g.fill(v.Index(i), depth+1)
			}
		}
	case reflect.Array:
		for i := range v.Len() {
			g.fill(v.Index(i), depth+1)
		}
	case reflect.Map:
		switch n := g.s.intn(4); n {
		case 0: // nil
		default:
			n--
			if n >= 2 {
				g.multiMap = true
			}
			v.Set(reflect.MakeMapWithSize(t, n))
			for range n {
				k := g.value(t.Key(), depth+1)
				if k.Kind() == reflect.Interface && !k.IsNil() && !k.Elem().Type().Comparable() {
					continue
				}
				v.SetMapIndex(k, g.value(t.Elem(), depth+1))
			}
		}
	case reflect.Pointer:
		if g.s.intn(3) != 0 {
			v.Set(reflect.New(t.Elem()))
			g.fill(v.Elem(), depth+1)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if t.Field(i).IsExported() {
				g.fill(v.Field(i), depth+1)
			}
		}
	}
}

// v5Try encodes with msgpack/v5, recovering its panics.
func v5Try(v any) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("msgpack/v5 panicked: %v", r)
		}
	}()
	var buf bytes.Buffer
	err = msgpack.NewEncoder(&buf).Encode(v)
	return buf.Bytes(), err
}

// v5Unmarshal decodes into a new value of t with msgpack/v5.
func v5Unmarshal(data []byte, t reflect.Type) (v reflect.Value, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("msgpack/v5 panicked: %v", r)
		}
	}()
	p := reflect.New(t)
	err = msgpack.Unmarshal(data, p.Interface())
	return p.Elem(), err
}

// codecUnmarshal decodes into a new value of t with the codec.
func codecUnmarshal(data []byte, t reflect.Type) (reflect.Value, error) {
	p := reflect.New(t)
	d := &decoder{data: data, par: true}
	err := run(func() error {
		if err := codecOf(t).dec(d, p.UnsafePointer()); err != nil {
			return err
		}
		if d.pos != len(data) {
			return errMalformed(d.pos, "bytes after the value")
		}
		return nil
	}, 0)
	return p.Elem(), err
}

// shadowsField says whether a struct reachable from t has a field that
// decoding never fills, another of the same msgpack name being decoded
// instead (LostField).
func shadowsField(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return shadowsField(t.Elem(), seen)
	case reflect.Map:
		return shadowsField(t.Key(), seen) || shadowsField(t.Elem(), seen)
	case reflect.Struct:
		if name, _ := LostField(t); name != "" {
			return true
		}
		for i := range t.NumField() {
			if shadowsField(t.Field(i).Type, seen) {
				return true
			}
		}
	}
	return false
}

func codecMarshal(v reflect.Value) ([]byte, error) {
	p := reflect.New(v.Type())
	p.Elem().Set(v)
	e := &encoder{par: true}
	err := run(func() error { return codecOf(v.Type()).enc(e, p.UnsafePointer()) }, -1)
	return e.buf, err
}

func differential(t *testing.T, typ reflect.Type, v reflect.Value, multiMap bool) {
	if err := Check(typ); err != nil {
		t.Fatalf("Check(%v): %v", typ, err)
	}
	before := probeFallbacks.Load()
	want, werr := v5Try(v.Addr().Interface())
	got, gerr := codecMarshal(v)
	if probeFallbacks.Load() != before {
		t.Fatalf("%v was handed to msgpack/v5 by the probe", typ)
	}
	if werr != nil {
		if gerr == nil {
			t.Fatalf("%v: msgpack/v5 fails (%v), the codec encodes %x", typ, werr, got)
		}
		return
	}
	// A map key that would load as an unhashable value is refused where
	// msgpack/v5 writes it (and then cannot read it): checked here by an
	// independent rule.
	if bad := unloadableKeys(v); errors.Is(gerr, errUnloadableKey) || bad {
		if !bad || gerr == nil {
			t.Fatalf("%v %#v: the key rule says %v, the codec %v", typ, v, bad, gerr)
		}
		// Unless a field of the same name shadows the map's when
		// decoding: then msgpack/v5 never reads the map back into it,
		// and the refusal, decided when encoding, is on the safe side.
		if _, err := v5Unmarshal(want, typ); err == nil && !shadowsField(typ, map[reflect.Type]bool{}) {
			t.Fatalf("%v %#v: the codec refuses a key msgpack/v5 reads back", typ, v)
		}
		return
	}
	if gerr != nil {
		t.Fatalf("%v %#v: the codec fails: %v (msgpack/v5: %x)", typ, v, gerr, want)
	}
	if !multiMap && !bytes.Equal(got, want) || multiMap && !bytes.Equal(canonical(got), canonical(want)) {
		t.Fatalf("%v %#v:\n got %x\nwant %x", typ, v, got, want)
	}
	// Both decoders, both encodings.
	x1, e1 := v5Unmarshal(want, typ)
	x2, e2 := codecUnmarshal(want, typ)
	x3, e3 := codecUnmarshal(got, typ)
	x4, e4 := v5Unmarshal(got, typ)
	if e1 != nil {
		if e2 == nil && !v5Refusal(e1) && !repeatsIntoInterface(typ) {
			t.Fatalf("%v: msgpack/v5 fails to decode %x (%v), the codec gives %#v", typ, want, e1, x2)
		}
		return
	}
	if e2 != nil {
		checkRefusal(t, want, e2, typ)
		return
	}
	if e3 != nil || e4 != nil {
		t.Fatalf("%v: decoding the codec's bytes %x: %v / %v", typ, got, e3, e4)
	}
	if !sameDecoding(typ, x2, x1) {
		t.Fatalf("%v: decoding %x:\ncodec %#v\n   v5 %#v", typ, want, x2, x1)
	}
	if !sameDecoding(typ, x3, x4) {
		t.Fatalf("%v: decoding the codec's bytes %x:\ncodec %#v\n   v5 %#v", typ, got, x3, x4)
	}
	if !dupKeys(want) && !interfaceKeys(typ) && !deepEqual(x3.Interface(), x2.Interface()) {
		t.Fatalf("%v: the two encodings decode differently:\ncodec bytes %x: %#v / %#v\n   v5 bytes %x: %#v / %#v", typ, got, x3, x4, want, x2, x1)
	}
}

// sameDecoding says whether the codec's and msgpack/v5's decodings of
// one input into typ agree: equal, or, where a field shadows another of
// the same msgpack name, equal but for msgpack/v5's sign error. There
// the bytes one field wrote are read into the other, a cross decode, and
// msgpack/v5 turns a uint64 above MaxInt64 into a float through int64;
// the codec converts it exactly (crossDecode checks that the codec's
// number conversions are exact).
func sameDecoding(typ reflect.Type, codec, v5 reflect.Value) bool {
	return deepEqual(codec.Interface(), v5.Interface()) ||
		shadowsField(typ, map[reflect.Type]bool{}) && v5SignFlip(codec, v5)
}

// v5SignFlip compares the codec's value c with msgpack/v5's v of the
// same type: equal everywhere, except that a float may be the codec's
// exact u, in [2^63, 2^64), where msgpack/v5 holds float(int64(u)).
func v5SignFlip(c, v reflect.Value) bool {
	switch c.Kind() {
	case reflect.Float32, reflect.Float64:
		x, y := c.Float(), v.Float()
		if x == y || x != x && y != y {
			return true
		}
		if x < 1<<63 || x >= 1<<64 {
			return false
		}
		if c.Kind() == reflect.Float32 {
			return y == float64(float32(int64(uint64(x))))
		}
		return y == float64(int64(uint64(x)))
	case reflect.Interface:
		if c.IsNil() || v.IsNil() || c.Elem().Type() != v.Elem().Type() {
			return c.IsNil() && v.IsNil()
		}
		return v5SignFlip(c.Elem(), v.Elem())
	case reflect.Map:
		if c.IsNil() != v.IsNil() || c.Len() != v.Len() {
			return false
		}
		for it := c.MapRange(); it.Next(); {
			w := v.MapIndex(it.Key())
			if !w.IsValid() || !v5SignFlip(it.Value(), w) {
				return false
			}
		}
		return true
	}
	if equal, ok := eachPart(c, v, v5SignFlip); ok {
		return equal
	}
	return deepEqual(c.Interface(), v.Interface())
}

// crossDecode decodes v's encoding into alt, the type with other
// numeric kinds.
func crossDecode(t *testing.T, typ reflect.Type, v reflect.Value, alt reflect.Type) {
	data, err := v5Try(v.Addr().Interface())
	if err != nil {
		return
	}
	x1, e1 := v5Unmarshal(data, alt)
	x2, e2 := codecUnmarshal(data, alt)
	switch {
	case e1 != nil && e2 != nil:
	case e1 != nil:
		if !v5Refusal(e1) && !repeatsIntoInterface(alt) {
			t.Fatalf("%v as %v: msgpack/v5 fails (%v), the codec gives %#v", typ, alt, e1, x2)
		}
	case e2 != nil:
		checkRefusal(t, data, e2, alt)
	default:
		if deepEqual(x1.Interface(), x2.Interface()) {
			return
		}
		// msgpack/v5 cut a number: the codec's value must then hold the
		// numbers of the same input decoded into the original type
		// exactly.
		// (When the input does not fit the original type either, the
		// values may differ only in numbers.)
		orig, err := codecUnmarshal(data, typ)
		if err == nil && !numEqual(x2, orig) || err != nil && !numEqual(x2, x2, x1) {
			t.Fatalf("%v as %v: decoding %x:\ncodec %#v\n   v5 %#v\n orig %#v", typ, alt, data, x2, x1, orig)
		}
	}
}

// numEqual compares a and b, values of two types of the same shape
// whose numbers may have other kinds: numbers must be equal exactly. With
// loose (a value of a's type), numbers are not compared, only the rest
// of a and loose.
func numEqual(a, b reflect.Value, loose ...reflect.Value) bool {
	if len(loose) > 0 {
		return sameBut(a, loose[0])
	}
	if exact(a) != nil || exact(b) != nil {
		x, y := exact(a), exact(b)
		if x == nil || y == nil {
			return false
		}
		if x.IsInf() || y.IsInf() { // big.Float holds NaN as nil; see exact
			return x.IsInf() && y.IsInf() && x.Sign() == y.Sign()
		}
		return x.Cmp(y) == 0
	}
	if isNaN(a) || isNaN(b) {
		return isNaN(a) && isNaN(b)
	}
	if a.Type() == b.Type() {
		return deepEqual(a.Interface(), b.Interface())
	}
	if equal, ok := eachPart(a, b, func(x, y reflect.Value) bool { return numEqual(x, y) }); ok {
		return equal
	}
	if a.Kind() != reflect.Map || a.IsNil() != b.IsNil() || a.Len() != b.Len() {
		return false
	}
	it := b.MapRange()
entries:
	for it.Next() {
		ia := a.MapRange()
		for ia.Next() {
			if numEqual(ia.Key(), it.Key()) && numEqual(ia.Value(), it.Value()) {
				continue entries
			}
		}
		return false
	}
	return true
}

// sameBut compares a and b, of one type, except their numbers.
func sameBut(a, b reflect.Value) bool {
	if exact(a) != nil || isNaN(a) {
		return true
	}
	if equal, ok := eachPart(a, b, sameBut); ok {
		return equal
	}
	if a.Kind() == reflect.Map {
		return a.IsNil() == b.IsNil() && a.Len() == b.Len()
	}
	return deepEqual(a.Interface(), b.Interface())
}

func isNaN(v reflect.Value) bool {
	return (v.Kind() == reflect.Float32 || v.Kind() == reflect.Float64) && math.IsNaN(v.Float())
}

// exact returns the number v holds, or nil if v is not a number (or NaN).
func exact(v reflect.Value) *big.Float {
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return new(big.Float).SetInt64(v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return new(big.Float).SetUint64(v.Uint())
	case reflect.Float32, reflect.Float64:
		if math.IsNaN(v.Float()) {
			return nil
		}
		return new(big.Float).SetFloat64(v.Float())
	}
	return nil
}

// v5Refusal reports whether msgpack/v5 refused a conversion the codec
// makes when it is exact: a float into an integer or a float64 into a
// float32 (msgpack/v5 refuses them all); or msgpack/v5 panicked.
func v5Refusal(err error) bool {
	m := err.Error()
	if strings.HasPrefix(m, "msgpack/v5 panicked") {
		// Decoding twice into an interface (a repeated field name),
		// msgpack/v5 panics where the codec replaces the value.
		return true
	}
	return (strings.Contains(m, "invalid code=ca") || strings.Contains(m, "invalid code=cb")) &&
		(strings.Contains(m, "decoding int64") || strings.Contains(m, "decoding uint64") || strings.Contains(m, "decoding float32"))
}

// repeatsIntoInterface reports whether t holds a struct where two
// encoded names decode into one field holding interfaces: msgpack/v5
// decodes the second value into the first one's dynamic value, and fails
// or panics, where the codec replaces it.
func repeatsIntoInterface(t reflect.Type) bool {
	return findType(t, func(t reflect.Type) (bool, []reflect.Type) {
		if t.Kind() != reflect.Struct {
			return false, parts(t)
		}
		spec, err := (&builder{}).fields(t)
		if err != nil {
			return false, nil
		}
		hits := map[*fieldSpec]int{}
		for _, f := range spec.list {
			if g := spec.byName[f.name]; g != nil {
				hits[g]++
				if hits[g] > 1 && mergesInterface(g.typ) {
					return true, nil
				}
			}
		}
		return false, spec.types()
	})
}

// mergesInterface reports whether decoding twice into a value of t may
// decode into an interface already set (through slices, arrays,
// pointers and structs; map entries are new values).
func mergesInterface(t reflect.Type) bool {
	return findType(t, func(t reflect.Type) (bool, []reflect.Type) {
		switch t.Kind() {
		case reflect.Interface:
			return true, nil
		case reflect.Map:
			return false, nil
		}
		return false, parts(t)
	})
}

// checkRefusal requires err to be the codec refusing, by the strict
// rule, a number msgpack/v5 accepted: the stored number at the error's
// offset must not fit the wanted kind exactly.
func checkRefusal(t *testing.T, data []byte, err error, typ reflect.Type) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrMismatch) {
		t.Fatalf("%v: decoding %x: the codec fails where msgpack/v5 does not: %v", typ, data, err)
	}
	if fits(data, e.Offset, e.Wanted) {
		t.Fatalf("%v: decoding %x: the codec refuses a number that fits: %v", typ, data, err)
	}
}

// fits is the strict rule, independently: the msgpack number at data[off]
// is exactly representable in the Go kind named wanted.
func fits(data []byte, off int, wanted string) bool {
	if off >= len(data) {
		return true
	}
	c := data[off]
	be := func(n int) uint64 {
		var v uint64
		for _, b := range data[off+1 : off+1+n] {
			v = v<<8 | uint64(b)
		}
		return v
	}
	var x *big.Float // nil for NaN
	switch {
	case c <= 0x7f:
		x = new(big.Float).SetInt64(int64(c))
	case c >= 0xe0:
		x = new(big.Float).SetInt64(int64(int8(c)))
	case c >= 0xcc && c <= 0xcf:
		x = new(big.Float).SetUint64(be(1 << (c - 0xcc)))
	case c >= 0xd0 && c <= 0xd3:
		n := 1 << (c - 0xd0)
		shift := 64 - 8*n
		x = new(big.Float).SetInt64(int64(be(n)<<shift) >> shift)
	case c == 0xca || c == 0xcb:
		var f float64
		if c == 0xca {
			f = float64(math.Float32frombits(uint32(be(4))))
		} else {
			f = math.Float64frombits(be(8))
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return wanted == "float32" || wanted == "float64"
		}
		x = new(big.Float).SetFloat64(f)
	default:
		return true // not a number: not the strict rule's business
	}
	switch wanted {
	case "float32":
		_, acc := x.Float32()
		return acc == big.Exact
	case "float64":
		_, acc := x.Float64()
		return acc == big.Exact
	}
	if !x.IsInt() {
		return false
	}
	i, _ := x.Int(nil)
	bits := map[string]uint{"int8": 8, "int16": 16, "int32": 32, "int64": 64, "int": 64,
		"uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64, "uint": 64}[wanted]
	if bits == 0 {
		return true
	}
	lo, hi := new(big.Int), new(big.Int)
	if strings.HasPrefix(wanted, "u") {
		hi.Lsh(big.NewInt(1), bits).Sub(hi, big.NewInt(1))
	} else {
		hi.Lsh(big.NewInt(1), bits-1).Sub(hi, big.NewInt(1))
		lo.Neg(new(big.Int).Lsh(big.NewInt(1), bits-1))
	}
	return i.Cmp(lo) >= 0 && i.Cmp(hi) <= 0
}

// canonical rewrites one msgpack value with every map's entries sorted
// by their bytes (an independent parser: it does not use Skip).
func canonical(b []byte) []byte {
	out, _ := canon(b, new(bool))
	return out
}

// dupKeys reports whether a map in b has two entries with the same key
// bytes (distinct Go keys can encode alike: uint8(1) and uint(1) in an
// interface{}); decoding keeps one, which depends on the map's order.
func dupKeys(b []byte) bool {
	dup := false
	canon(b, &dup)
	return dup
}

// interfaceKeys reports whether t holds a map whose keys hold
// interfaces: distinct keys (int8(-1), int(-1)) can decode alike there,
// and which one is kept depends on the map's order.
func interfaceKeys(t reflect.Type) bool {
	return findType(t, func(t reflect.Type) (bool, []reflect.Type) {
		if t.Kind() == reflect.Map {
			return hasInterface(t.Key()), []reflect.Type{t.Elem()}
		}
		return false, parts(t)
	})
}

func canon(b []byte, dup *bool) (out, rest []byte) {
	if len(b) == 0 {
		return nil, nil
	}
	c := b[0]
	be := func(n int) int {
		v := 0
		for _, x := range b[1 : 1+n] {
			v = v<<8 | int(x)
		}
		return v
	}
	elems, hdr, isMap, body := 0, 1, false, 0
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
	case c <= 0x8f:
		elems, isMap = int(c&0xf), true
	case c <= 0x9f:
		elems = int(c & 0xf)
	case c <= 0xbf:
		body = int(c & 0x1f)
	case c == 0xcc || c == 0xd0:
		body = 1
	case c == 0xcd || c == 0xd1:
		body = 2
	case c == 0xce || c == 0xd2 || c == 0xca:
		body = 4
	case c == 0xcf || c == 0xd3 || c == 0xcb:
		body = 8
	case c == 0xc4 || c == 0xd9:
		hdr, body = 2, be(1)
	case c == 0xc5 || c == 0xda:
		hdr, body = 3, be(2)
	case c == 0xc6 || c == 0xdb:
		hdr, body = 5, be(4)
	case c >= 0xd4 && c <= 0xd8:
		body = 1 + 1<<(c-0xd4)
	case c == 0xc7:
		hdr, body = 2, 1+be(1)
	case c == 0xc8:
		hdr, body = 3, 1+be(2)
	case c == 0xc9:
		hdr, body = 5, 1+be(4)
	case c == 0xdc:
		hdr, elems = 3, be(2)
	case c == 0xdd:
		hdr, elems = 5, be(4)
	case c == 0xde:
		hdr, elems, isMap = 3, be(2), true
	case c == 0xdf:
		hdr, elems, isMap = 5, be(4), true
	}
	out = append(out, b[:hdr+body]...)
	rest = b[hdr+body:]
	if !isMap {
		for range elems {
			var e []byte
			e, rest = canon(rest, dup)
			out = append(out, e...)
		}
		return out, rest
	}
	entries := make([][]byte, elems)
	keys := map[string]bool{}
	for i := range entries {
		var k, v []byte
		k, rest = canon(rest, dup)
		v, rest = canon(rest, dup)
		if keys[string(k)] {
			*dup = true
		}
		keys[string(k)] = true
		entries[i] = append(k, v...)
	}
	slices.SortFunc(entries, bytes.Compare)
	for _, e := range entries {
		out = append(out, e...)
	}
	return out, rest
}

// FuzzDecode decodes arbitrary bytes into a few types: never a panic,
// never an error but an *Error, never more memory than the input backs.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"", "c0", "dd ffffffff", "df ffffffff", "dc ffff 00", "91 91 91 91 91 90",
		"81 a1 61 92 01 02", "85 a4 4e616d65 a1 78 a5 436f756e74 d3 0000000000000001 a7 55706461746564 d6 ff 00000001 a4 54616773 91 a1 61 a5 53636f7265 cb 3ff0000000000000",
		"c7 0c ff 00000000 0000000000000001", "d4 05 00", "c1", "ca 3fc00000", "cf ffffffffffffffff"} {
		f.Add(mustHex(strings.ReplaceAll(s, " ", "")))
	}
	f.Add(bytes.Repeat([]byte{0x91}, 20000))
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeBounded[any](t, data)
		decodeBounded[Record](t, data)
		decodeBounded[map[string]Record](t, data)
		decodeBounded[[]int64](t, data)
		decodeBounded[[][]any](t, data)
		decodeBounded[Node](t, data)
		if n, err := Skip(data); err == nil {
			if n > len(data) {
				t.Fatalf("Skip: %d > %d", n, len(data))
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("Skip: %v", err)
		}
	})
}

// decodeBounded decodes data into a new T: the error, if any, must be an
// *Error of one of the kinds; the memory allocated must stay within a
// bound proportional to the input.
func decodeBounded[T any](t *testing.T, data []byte) {
	c, err := For[T]()
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var v T
	err = c.Decode(data, &v)
	runtime.ReadMemStats(&after)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("Decode into %T: not an *Error: %v", v, err)
		}
		if !errors.Is(err, ErrMismatch) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooDeep) {
			t.Fatalf("Decode into %T: unexpected kind: %v", v, err)
		}
	}
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(256*len(data)+16<<20); got > limit {
		t.Fatalf("Decode of %d bytes into %T allocated %d bytes (limit %d)", len(data), v, got, limit)
	}
}

// unloadableKeys is the key rule, independently: v holds a map key with
// an interface (itself, or an element or exported field of it) whose
// dynamic value msgpack writes as an array, a map or bin (an array, a
// struct other than time.Time, a pointer to one): it decodes as a
// []interface{}, a map[string]interface{} or a []byte, which cannot be
// hashed.
func unloadableKeys(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		return !v.IsNil() && unloadableKeys(v.Elem())
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if badKey(it.Key()) || unloadableKeys(it.Key()) || unloadableKeys(it.Value()) {
				return true
			}
		}
		return false
	}
	return anyElem(v, true, unloadableKeys)
}

func encodedField(f reflect.StructField) bool {
	name, _, _ := strings.Cut(f.Tag.Get("msgpack"), ",")
	return f.IsExported() && name != "-"
}

func badKey(k reflect.Value) bool {
	switch k.Kind() {
	case reflect.Interface:
		return !k.IsNil() && !loadsAsScalar(k.Elem())
	case reflect.Array, reflect.Struct:
		return anyElem(k, true, badKey)
	}
	return false
}

func loadsAsScalar(x reflect.Value) bool {
	if x.Type() == timeType {
		return true
	}
	switch x.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64, reflect.String:
		return true
	case reflect.Pointer:
		return x.IsNil() || loadsAsScalar(x.Elem())
	}
	return false
}
