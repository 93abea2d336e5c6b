package instadump

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
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

// mapKeyRefused requires NewMap to refuse a Map with keys of K, with an
// error naming the map and the type and advising a string key.
func mapKeyRefused[K comparable](t *testing.T, db *DB) {
	t.Helper()
	typ := reflect.TypeFor[K]().String()
	_, err := NewMap[K, int](db, "by "+typ)
	if !errors.Is(err, ErrUnsupportedType) || !strings.Contains(err.Error(), quote("by "+typ)) ||
		!strings.Contains(err.Error(), typ) || !strings.Contains(err.Error(), "fmt.Sprint") {
		t.Fatalf("NewMap with keys of %s: %v", typ, err)
	}
}

// Keys that would not load back as the same keys (NaN never equals
// itself; pointers load as new addresses; interfaces as other dynamic
// types; composites are refused whole) are refused at NewMap and DefMap.
func TestMapKeyKindsRefused(t *testing.T) {
	db := openT(t, t.TempDir())
	type pair struct{ A, B int }
	mapKeyRefused[float64](t, db)
	mapKeyRefused[float32](t, db)
	mapKeyRefused[[2]int](t, db)
	mapKeyRefused[[3]byte](t, db)
	mapKeyRefused[pair](t, db)
	mapKeyRefused[*int](t, db)
	mapKeyRefused[any](t, db)
	mapKeyRefused[fmt.Stringer](t, db)
	mapKeyRefused[chan int](t, db)
	mapKeyRefused[uintptr](t, db)
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
