package instadump

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/instadump/instadump/internal/codec"
	"github.com/vmihailenco/msgpack/v5"
)

type (
	keyName  string
	keyLevel int8
	keyFlag  bool
	keyID    uint64
)

// roundTripKeys saves a map holding keys, reopens the directory and
// requires every key to be found with its value.
func roundTripKeys[K comparable](t *testing.T, keys ...K) {
	t.Helper()
	dir := t.TempDir()
	db := openT(t, dir)
	name := fmt.Sprintf("keys-%v", reflect.TypeFor[K]())
	m := newMapT[K, int](t, db, name)
	for i, k := range keys {
		m.Set(k, i)
	}
	saveT(t, db)
	m.Delete(keys[0]) // and a delta
	m.Set(keys[0], -1)
	saveT(t, db)
	db.Close()
	db = openT(t, dir)
	defer db.Close()
	m = newMapT[K, int](t, db, name)
	if m.Len() != len(keys) {
		t.Fatalf("%s: %d keys after reopening, want %d", name, m.Len(), len(keys))
	}
	for i, k := range keys {
		if i == 0 {
			i = -1
		}
		if v, ok := m.Get(k); !ok || v != i {
			t.Fatalf("%s: key %v: %d, %v after reopening; want %d", name, k, v, ok, i)
		}
	}
}

// Every key kind a Map accepts loads back as the same keys: the
// boundaries of every integer width (the codec writes int and uint in
// their smallest form, the others at their own width), strings, bools,
// and named types of those kinds.
func TestMapKeyKindsRoundTrip(t *testing.T) {
	roundTripKeys(t, "", "a", strings.Repeat("é", 40), "\x00\xff")
	roundTripKeys(t, true, false)
	roundTripKeys(t, 0, 1, -1, 127, 128, -32, -33, math.MaxInt64, math.MinInt64, 1<<32, -1<<32)
	roundTripKeys[int8](t, 0, -1, math.MaxInt8, math.MinInt8)
	roundTripKeys[int16](t, 0, -1, math.MaxInt16, math.MinInt16)
	roundTripKeys[int32](t, 0, -1, math.MaxInt32, math.MinInt32)
	roundTripKeys[int64](t, 0, -1, math.MaxInt64, math.MinInt64)
	roundTripKeys[uint](t, 0, 1, 255, 256, math.MaxUint32, math.MaxUint)
	roundTripKeys[uint8](t, 0, 1, math.MaxUint8)
	roundTripKeys[uint16](t, 0, math.MaxUint16)
	roundTripKeys[uint32](t, 0, math.MaxUint32)
	roundTripKeys[uint64](t, 0, 1<<63, math.MaxUint64)
	roundTripKeys[keyName](t, "x", "")
	roundTripKeys[keyLevel](t, math.MinInt8, 3)
	roundTripKeys[keyFlag](t, false, true)
	roundTripKeys[keyID](t, math.MaxUint64, 7)
}

type (
	hiddenField  struct{ A, b int } //lint:ignore U1000 the unexported field is the point
	skippedField struct {
		A int
		B int `msgpack:"-"`
	}
	blankField struct {
		A int
		_ int
	}
	inlineInner struct{ A, B int }
	inlineDup   struct {
		A           int
		inlineInner `msgpack:",inline"`
	}
	sameName struct {
		A int
		B int `msgpack:"A"`
	}
)

// mapKeyRefused requires NewMap to refuse a Map with keys of K, with an
// error naming the map and the type, saying why and advising a string
// key.
func mapKeyRefused[K comparable](t *testing.T, db *DB, why string) {
	t.Helper()
	typ := reflect.TypeFor[K]().String()
	_, err := NewMap[K, int](db, "by "+typ)
	if !errors.Is(err, ErrUnsupportedType) || !strings.Contains(err.Error(), quote("by "+typ)) ||
		!strings.Contains(err.Error(), typ) || !strings.Contains(err.Error(), "fmt.Sprint") || !strings.Contains(err.Error(), why) {
		t.Fatalf("NewMap with keys of %s: %v", typ, err)
	}
}

// Keys that would not load back as the same keys (NaN never equals
// itself; pointers load as new addresses; interfaces as other dynamic
// types; a struct field that is not saved loads as zero), or arrays and
// structs holding them, are refused at NewMap and DefMap.
func TestMapKeyKindsRefused(t *testing.T) {
	db := openT(t, t.TempDir())
	mapKeyRefused[float64](t, db, "NaN")
	mapKeyRefused[float32](t, db, "NaN")
	mapKeyRefused[[2]float32](t, db, "its [i] is of type float32: a NaN")
	mapKeyRefused[struct{ A, B float64 }](t, db, "its .A is of type float64")
	mapKeyRefused[[2]struct{ P *int }](t, db, "its [i].P is of type *int: a pointer")
	mapKeyRefused[struct{ K [2]any }](t, db, "its .K[i] is of type interface {}")
	mapKeyRefused[struct{ C chan int }](t, db, "its .C is of type chan int")
	mapKeyRefused[[1]uintptr](t, db, "cannot be stored")
	mapKeyRefused[hiddenField](t, db, "its field .b is not saved")
	mapKeyRefused[skippedField](t, db, "its field .B is not saved")
	mapKeyRefused[blankField](t, db, "its field ._ is not saved")
	mapKeyRefused[sameName](t, db, "its field .A is not saved")
	mapKeyRefused[inlineDup](t, db, "its field .A is not saved")
	mapKeyRefused[[2]struct{ In hiddenField }](t, db, "its field [i].In.b is not saved")
	mapKeyRefused[*int](t, db, "pointer")
	mapKeyRefused[any](t, db, "another dynamic type")
	mapKeyRefused[fmt.Stringer](t, db, "another dynamic type")
	mapKeyRefused[chan int](t, db, "cannot be stored")
	mapKeyRefused[uintptr](t, db, "cannot be stored")
	if len(db.members) != 0 {
		t.Fatalf("%d maps registered", len(db.members))
	}
	defer func() {
		r := recover()
		if s, _ := r.(string); !strings.Contains(s, "float64") || !strings.Contains(s, `"def-floats"`) {
			t.Fatalf("DefMap with float keys: %v", r)
		}
	}()
	DefMap[float64, int]("def-floats")
}

type (
	// keyUUID is a [16]byte with binary marshalling, as uuid.UUID is.
	keyUUID   [16]byte
	keyPerson struct {
		Org  string
		ID   int32
		Seat uint8
		Tag  keyName
	}
	keyCell struct {
		Row  int8
		Name string
		Pos  [2]uint16
	}
	keyEmbed struct {
		keyPerson
		Extra bool
	}
)

func (u keyUUID) MarshalBinary() ([]byte, error) { return u[:], nil }

func (u *keyUUID) UnmarshalBinary(b []byte) error {
	if len(b) != len(u) {
		return fmt.Errorf("%d bytes for a keyUUID", len(b))
	}
	copy(u[:], b)
	return nil
}

// uuidKeys returns n distinct [16]byte keys.
func uuidKeys(n int) [][16]byte {
	keys := make([][16]byte, n)
	for i := range keys {
		keys[i][0], keys[i][7], keys[i][15] = byte(i), byte(i>>8), 0xff
	}
	return keys
}

// Arrays and structs of bool, string and integer kinds, at any depth,
// load back as the keys saved: UUIDs (a [16]byte, plain or with binary
// marshalling), short byte arrays, structs of ints and strings, arrays
// of structs holding arrays; enough UUIDs for the base to be saved in
// several parts.
func TestMapCompositeKeysRoundTrip(t *testing.T) {
	roundTripKeys(t, uuidKeys(5000)...)
	var named []keyUUID
	for _, k := range uuidKeys(300) {
		named = append(named, keyUUID(k))
	}
	roundTripKeys(t, named...)
	roundTripKeys(t, [3]byte{}, [3]byte{1, 2, 3}, [3]byte{0xff, 0, 0xff})
	roundTripKeys(t, [2]int{}, [2]int{math.MinInt64, math.MaxInt64}, [2]int{-1, 1})
	roundTripKeys(t, struct{ A, B int }{1, 2}, struct{ A, B int }{2, 1}, struct{ A, B int }{})
	roundTripKeys(t, keyPerson{}, keyPerson{Org: "a", ID: math.MinInt32, Seat: 255, Tag: "t"}, keyPerson{Org: "a", ID: math.MaxInt32},
		keyPerson{Org: strings.Repeat("é", 40), ID: -1})
	roundTripKeys(t, [2]keyCell{}, [2]keyCell{{Row: -128, Name: "x", Pos: [2]uint16{1, 65535}}, {Name: "y"}},
		[2]keyCell{{Row: 127}, {Row: 127, Pos: [2]uint16{0, 1}}})
	roundTripKeys(t, keyEmbed{}, keyEmbed{keyPerson: keyPerson{Org: "o", ID: 7}, Extra: true}, keyEmbed{Extra: true})
	roundTripKeys(t, struct{}{})
	DefMap[[16]byte, int]("def-uuids")
	DefMap[keyPerson, string]("def-people")
}

// A composite key is written as msgpack/v5 writes it.
func TestMapCompositeKeyEncoding(t *testing.T) {
	sameAsV5(t, [16]byte{1, 2, 3, 15: 0xff})
	sameAsV5(t, keyUUID{1, 15: 2})
	sameAsV5(t, [3]byte{1, 2, 3})
	sameAsV5(t, keyPerson{Org: "a", ID: -70000, Seat: 200, Tag: "t"})
	sameAsV5(t, [2]keyCell{{Row: -5, Name: "x", Pos: [2]uint16{1, 65535}}, {Name: "y"}})
	sameAsV5(t, keyEmbed{keyPerson: keyPerson{Org: "o"}, Extra: true})
}

func sameAsV5[K comparable](t *testing.T, k K) {
	t.Helper()
	pc, err := codec.ForPairs[K, int]()
	if err != nil {
		t.Fatal(err)
	}
	got, err := pc.AppendKeys(nil, []K{k})
	if err != nil {
		t.Fatal(err)
	}
	want, err := msgpack.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%T %v: % x, msgpack/v5 writes % x", k, k, got, want)
	}
}

// padded has 7 bytes of padding after A.
type padded struct {
	A int8
	B int64
}

// The hash that shards a Map's keys gives equal keys equal hashes: keys
// holding strings (equal strings at other addresses), keys with padding
// (whatever the padding holds); and for keys of integers without padding
// ([16]byte, say) it is the same in every run, so that a base saved in
// parts loads each part into shards of its own.
func TestMapKeyHash(t *testing.T) {
	h := hasherFor[keyPerson]()
	a := keyPerson{Org: strings.Repeat("o", 3), ID: 5}
	b := keyPerson{Org: string([]byte("ooo")), ID: 5}
	if h(a) != h(b) {
		t.Fatal("equal keys holding strings at different addresses hash differently")
	}
	hp := hasherFor[padded]()
	var dirty padded
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&dirty)), unsafe.Sizeof(dirty))
	for i := range raw {
		raw[i] = 0xaa
	}
	dirty.A, dirty.B = 1, 2
	if hp(dirty) != hp(padded{1, 2}) {
		t.Fatal("equal keys with different padding hash differently")
	}
	k := [16]byte{1, 2, 3}
	h1, h2 := hasherFor[[16]byte](), hasherFor[[16]byte]() // as in two runs
	if h1(k) != h2(k) {
		t.Fatal("the hash of a [16]byte key is not the same in every run")
	}
	type pair struct{ A, B int32 }
	p1, p2 := hasherFor[pair](), hasherFor[pair]()
	if p1(pair{1, 2}) != p2(pair{1, 2}) {
		t.Fatal("the hash of a struct of int32s is not the same in every run")
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[padded](), reflect.TypeFor[blankField](), reflect.TypeFor[keyPerson](),
		reflect.TypeFor[struct {
			A bool
			B [3]int8
		}]()} {
		if typ.Kind() == reflect.Struct && typ.NumField() == 2 && typ.Field(0).Type.Kind() == reflect.Bool {
			if !plainMemory(typ) {
				t.Fatalf("%s: not plain memory", typ)
			}
			continue
		}
		if plainMemory(typ) {
			t.Fatalf("%s: plain memory", typ)
		}
	}
}

// emailKey's own encoding folds case: two keys save as one, and a key
// may load as another.
type emailKey string

func (e emailKey) MarshalText() ([]byte, error) { return []byte(strings.ToLower(string(e))), nil }

func (e *emailKey) UnmarshalText(b []byte) error {
	*e = emailKey(b)
	return nil
}

// A key type whose own encoding method does not give back the key saved
// fails the Save that would write it, naming the map and the key, with
// ErrUnsupportedType; the map stays in memory, and once the offending
// key is gone the next Save writes, and the map loads back whole.
func TestMapKeyMethodLosesKeys(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	m, err := NewMap[emailKey, int](db, "users")
	if err != nil {
		t.Fatal(err)
	}
	m.Set("ada@example.com", 1)
	m.Set("Bob@example.com", 2)
	for round, key := range []string{"Bob@example.com", "Dee@example.com"} { // a full save, then a delta
		_, err := db.Save()
		if !errors.Is(err, ErrUnsupportedType) || !strings.Contains(err.Error(), `"users"`) || !strings.Contains(err.Error(), key) {
			t.Fatalf("round %d: Save: %v", round, err)
		}
		if round == 0 {
			m.Delete("Bob@example.com")
			m.Set("carl@example.com", 3)
			if _, err := db.Save(); err != nil {
				t.Fatal(err)
			}
			m.Set("Dee@example.com", 4)
		}
	}
	// Its delete cannot be written either (it would delete the key it
	// loads back as): that Save fails, and the next writes the map whole.
	saveWhole := func(key string) {
		t.Helper()
		if _, err := db.Save(); !errors.Is(err, ErrUnsupportedType) || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "whole") {
			t.Fatalf("Save of the delete of %s: %v", key, err)
		}
		if _, err := db.Save(); err != nil {
			t.Fatal(err)
		}
	}
	m.Delete("Dee@example.com")
	saveWhole("Dee@example.com")
	m.Set("Eve@example.com", 5)
	m.Set("eve@example.com", 6)
	if _, err := db.Save(); err == nil || !strings.Contains(err.Error(), "Eve@example.com") {
		t.Fatalf("Save with Eve: %v", err)
	}
	m.Delete("Eve@example.com")
	saveWhole("Eve@example.com")
	if v, ok := m.Get("eve@example.com"); !ok || v != 6 {
		t.Fatalf("eve: %d %v", v, ok)
	}
	m.Delete("eve@example.com")
	if _, err := db.Save(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = openT(t, dir)
	m, err = NewMap[emailKey, int](db, "users")
	ada, _ := m.Get("ada@example.com")
	carl, _ := m.Get("carl@example.com")
	if err != nil || m.Len() != 2 || ada != 1 || carl != 3 {
		t.Fatalf("loaded %d entries, err %v", m.Len(), err)
	}
}

// lowerOnLoad decodes by a method of its own, folding case, and encodes
// as the string it is.
type lowerOnLoad string

func (l *lowerOnLoad) UnmarshalText(b []byte) error {
	*l = lowerOnLoad(strings.ToLower(string(b)))
	return nil
}

// A key type that decodes by a method of its own is checked too.
func TestMapKeyDecodeMethodLosesKeys(t *testing.T) {
	db := openT(t, t.TempDir())
	m, err := NewMap[lowerOnLoad, int](db, "m")
	if err != nil {
		t.Fatal(err)
	}
	m.Set("A", 1)
	m.Set("a", 2)
	if _, err := db.Save(); !errors.Is(err, ErrUnsupportedType) || !strings.Contains(err.Error(), "key A ") {
		t.Fatalf("Save: %v", err)
	}
}

// Key types whose own methods encode them exactly are taken, though
// their fields are unexported, and load back.
func TestMapKeyOwnMethodsTaken(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	addrs, err := NewMap[netip.Addr, int](db, "addrs")
	if err != nil {
		t.Fatal(err)
	}
	ports, err := NewMap[netip.AddrPort, string](db, "ports")
	if err != nil {
		t.Fatal(err)
	}
	a4, a6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	addrs.Set(a4, 4)
	addrs.Set(a6, 6)
	ports.Set(netip.AddrPortFrom(a6, 443), "https")
	if _, err := db.Save(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = openT(t, dir)
	addrs, err = NewMap[netip.Addr, int](db, "addrs")
	if err != nil {
		t.Fatal(err)
	}
	ports, err = NewMap[netip.AddrPort, string](db, "ports")
	if err != nil {
		t.Fatal(err)
	}
	v4, _ := addrs.Get(a4)
	v6, _ := addrs.Get(a6)
	p, _ := ports.Get(netip.AddrPortFrom(a6, 443))
	if addrs.Len() != 2 || v4 != 4 || v6 != 6 || p != "https" {
		t.Fatalf("loaded %d addrs (%d, %d), port %q", addrs.Len(), v4, v6, p)
	}
}

// skuKey's decoding method refuses what does not start with SKU-.
type skuKey string

func (k skuKey) MarshalText() ([]byte, error) { return []byte(k), nil }

func (k *skuKey) UnmarshalText(b []byte) error {
	if !strings.HasPrefix(string(b), "SKU-") {
		return errors.New("not a SKU")
	}
	*k = skuKey(b)
	return nil
}

// A key its type's decoding method refuses fails the Save that would
// write it; deleted, its delete cannot be written either, and the Save
// after that one writes the map whole.
func TestMapKeyDecodeMethodRefuses(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	m, err := NewMap[skuKey, int](db, "stock")
	if err != nil {
		t.Fatal(err)
	}
	m.Set("SKU-1", 1)
	saveT(t, db)
	m.Set("bogus", 2)
	if _, err := db.Save(); !errors.Is(err, ErrUnsupportedType) || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("Save with a refused key: %v", err)
	}
	m.Delete("bogus")
	m.Set("SKU-2", 3)
	if _, err := db.Save(); !errors.Is(err, ErrUnsupportedType) || !strings.Contains(err.Error(), "whole") {
		t.Fatalf("Save of the delete of a refused key: %v", err)
	}
	saveT(t, db) // the map whole
	db.Close()
	db = openT(t, dir)
	m, err = NewMap[skuKey, int](db, "stock")
	if err != nil || m.Len() != 2 {
		t.Fatalf("loaded %d entries: %v", m.Len(), err)
	}
}

// nanKey is a float key with methods of its own: a NaN key never equals
// itself, so it is refused at NewMap as a float is.
type nanKey float64

func (f nanKey) MarshalText() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(f), 'g', -1, 64)), nil
}

func (f *nanKey) UnmarshalText(b []byte) error {
	v, err := strconv.ParseFloat(string(b), 64)
	*f = nanKey(v)
	return err
}

// floatInside has methods of its own, and a float inside.
type floatInside struct{ X float64 }

func (f floatInside) MarshalText() ([]byte, error) { return []byte(fmt.Sprint(f.X)), nil }

func (f *floatInside) UnmarshalText(b []byte) error {
	_, err := fmt.Sscan(string(b), &f.X)
	return err
}

// anyInside has methods of its own, and an interface inside (which may
// hold a NaN).
type anyInside struct{ v any }

func (k anyInside) MarshalText() ([]byte, error) { return []byte(fmt.Sprint(k.v)), nil }

func (k *anyInside) UnmarshalText(b []byte) error {
	k.v = string(b)
	return nil
}

// badKey's encoding method fails for "bad", and panics for "boom".
type badKey struct{ S string }

func (k badKey) MarshalText() ([]byte, error) {
	switch {
	case k.S == "bad", k.S == "later-bad" && laterBad.Load():
		return nil, errors.New("no")
	case k.S == "boom":
		panic("boom")
	}
	return []byte(k.S), nil
}

func (k *badKey) UnmarshalText(b []byte) error {
	k.S = string(b)
	return nil
}

func TestMapKeyMethodsEdges(t *testing.T) {
	db := openT(t, t.TempDir())
	mapKeyRefused[nanKey](t, db, "NaN")
	mapKeyRefused[floatInside](t, db, "NaN")
	mapKeyRefused[anyInside](t, db, "interface")
	m, err := NewMap[badKey, int](db, "m")
	if err != nil {
		t.Fatal(err)
	}
	m.Set(badKey{"a"}, 1)
	saveT(t, db)
	for _, bad := range []string{"bad", "boom"} {
		m.Set(badKey{bad}, 2)
		if _, err := db.Save(); !errors.Is(err, ErrUnsupportedType) || !strings.Contains(err.Error(), bad) {
			t.Fatalf("Save with key %q: %v", bad, err)
		}
		// Its delete cannot be written: that Save fails, and the next
		// writes the map whole, without it.
		m.Delete(badKey{bad})
		if _, err := db.Save(); !errors.Is(err, ErrUnsupportedType) || !strings.Contains(err.Error(), "whole") {
			t.Fatalf("Save of the delete of %q: %v", bad, err)
		}
		saveT(t, db)
	}
	// A key on disk whose encoding method fails now: deleted, the map is
	// written whole without it, and loads back.
	dir := t.TempDir()
	db2 := openT(t, dir)
	m2, _ := NewMap[badKey, int](db2, "m")
	m2.Set(badKey{"a"}, 1)
	m2.Set(badKey{"later-bad"}, 2)
	saveT(t, db2)
	laterBad.Store(true)
	defer laterBad.Store(false)
	m2.Delete(badKey{"later-bad"})
	if _, err := db2.Save(); err == nil {
		t.Fatal("the delete of a key that no longer encodes saved")
	}
	saveT(t, db2)
	db2.Close()
	db2 = openT(t, dir)
	m2, err = NewMap[badKey, int](db2, "m")
	if err != nil || m2.Len() != 1 {
		t.Fatalf("loaded %d entries: %v", m2.Len(), err)
	}
}

// laterBad makes badKey's encoding fail for "later-bad" too.
var laterBad atomic.Bool
