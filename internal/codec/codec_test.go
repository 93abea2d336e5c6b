package codec

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

type (
	myInt    int
	myInt8   int8
	myUint16 uint16
	myString string
	myBytes  []byte
	myFloat  float32
	myBool   bool
	myTags   []string
	myMap    map[string]any
)

type basic struct {
	B    bool
	I    int
	I8   int8
	I16  int16
	I32  int32
	I64  int64
	U    uint
	U8   uint8
	U16  uint16
	U32  uint32
	U64  uint64
	F32  float32
	F64  float64
	S    string
	Bs   []byte
	Arr  [3]byte
	T    time.Time
	D    time.Duration
	MI   myInt
	MS   myString
	MB   myBytes
	MF   myFloat
	MBo  myBool
	MT   myTags
	MI8  myInt8
	MU16 myUint16
}

type tagged struct {
	//lint:ignore U1000 msgpack/v5 reads this field's tag
	_msgpack struct{} `msgpack:",omitempty"`
	Renamed  int      `msgpack:"r"`
	Skipped  int      `msgpack:"-"`
	Aliased  string   `msgpack:"a,alias:al"`
	Empty    []int
	P        *int
	//lint:ignore U1000 an unexported field is ignored
	hidden int
}

type omit struct {
	A int            `msgpack:",omitempty"`
	S string         `msgpack:",omitempty"`
	P *int           `msgpack:",omitempty"`
	M map[string]int `msgpack:",omitempty"`
	L []int          `msgpack:",omitempty"`
	T time.Time      `msgpack:",omitempty"`
	X any            `msgpack:",omitempty"`
	N inner          `msgpack:",omitempty"`
	E innerOmit      `msgpack:",omitempty"`
	F float64        `msgpack:",omitempty"`
	Z [0]int         `msgpack:",omitempty"`
	Q [2]int         `msgpack:",omitempty"`
	K bool
}

type inner struct{ X, Y int }

type innerOmit struct {
	X int `msgpack:",omitempty"`
}

type Base struct {
	ID   int
	Name string
}

type withEmbed struct {
	Base
	Extra int
}

type withEmbedPtr struct {
	*Base
	Extra int
}

type withEmbedPtrOmit struct {
	*Base
	Extra int `msgpack:",omitempty"`
}

type shadow struct {
	Base
	Name string // shadows Base.Name: automatic inlining stops
}

type shadowInline struct {
	Base `msgpack:",inline"`
	ID   string // listed after the inlined ID: both are encoded
}

type noInline struct {
	Base `msgpack:",noinline"`
	X    int
}

type embedTime struct {
	time.Time
	X int
}

type asArray struct {
	//lint:ignore U1000 msgpack/v5 reads this field's tag
	_msgpack struct{} `msgpack:",as_array"`
	A        int
	B        string
}

type Node struct {
	Val  int
	Next *Node
	Kids []Node
	M    map[string]*Node
}

type withAny struct {
	V any
	L []any
	M map[string]any
}

type mapKeys struct {
	I  map[int]string
	U8 map[uint8]bool
	F  map[float64]int
	B  map[bool]int
	A  map[[2]int]int
	S  map[inner]int
	X  map[any]int
	P  map[myString]myInt
}

func ptr[T any](v T) *T { return &v }

func TestSameAsV5(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	same(t, true)
	same(t, 0)
	same(t, -1)
	same(t, math.MaxInt64)
	same(t, math.MinInt64)
	same(t, int8(-128))
	same(t, int8(5))
	same(t, int16(300))
	same(t, int32(-70000))
	same(t, int64(1))
	same(t, uint(300))
	same(t, uint8(255))
	same(t, uint16(1))
	same(t, uint32(1<<31))
	same(t, uint64(math.MaxUint64))
	same(t, float32(1.5))
	same(t, math.Inf(-1))
	same(t, "")
	same(t, strings.Repeat("x", 31))
	same(t, strings.Repeat("x", 32))
	same(t, strings.Repeat("x", 256))
	same(t, strings.Repeat("x", 70000))
	same(t, []byte(nil))
	same(t, []byte{})
	same(t, make([]byte, 300))
	same(t, make([]byte, 70000))
	same(t, [4]byte{1, 2, 3, 4})
	same(t, [0]byte{})
	same(t, time.Time{})
	same(t, time.Unix(0, 0))
	same(t, time.Unix(1<<32-1, 0))
	same(t, time.Unix(1<<32, 5))
	same(t, time.Unix(1<<34, 5))
	same(t, time.Unix(-1, 999999999))
	same(t, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC))
	same(t, time.Date(1900, 1, 2, 3, 4, 5, 6, loc))
	same(t, time.Duration(-5))
	same(t, []int(nil))
	same(t, []int{})
	same(t, []int{1, 2, 3})
	same(t, make([]int64, 20))
	same(t, make([]uint8x, 70000))
	same(t, []string(nil))
	same(t, []string{"a", ""})
	same(t, [3]int{1, 2, 3})
	same(t, [][]int{nil, {}, {1}})
	same(t, map[string]int(nil))
	same(t, map[string]int{})
	same(t, map[string]int{"a": 1})
	same(t, map[string]string{"a": "b"})
	same(t, map[string]bool{"a": true})
	same(t, map[string]any{"a": []any{1, "x", nil, map[string]any{"y": 2.5}}})
	same(t, map[int]string{-3: "x"})
	same(t, (*int)(nil))
	same(t, ptr(5))
	same(t, ptr(ptr(5)))
	same(t, ptr((*int)(nil)))
	same(t, any(nil))
	same(t, any(int64(5)))
	same(t, any([]byte(nil)))
	same(t, any(time.Unix(5, 0)))
	same(t, any(map[string]any{}))
	same(t, any([]any{}))
	same(t, any(uint16(5)))
	same(t, any(float32(2)))
	same(t, basic{})
	same(t, basic{B: true, I: -1000, I8: -1, I16: -300, I32: 1 << 20, I64: -1 << 40, U: 1 << 40, U8: 200, U16: 60000,
		U32: 1 << 31, U64: 1 << 63, F32: -1.25, F64: math.Pi, S: "héllo", Bs: []byte("x"), Arr: [3]byte{1},
		T: time.Unix(1e9, 7), D: time.Second, MI: -7, MS: "m", MB: myBytes{}, MF: 3, MBo: true, MT: myTags{"a"}, MI8: -2, MU16: 9})
	same(t, tagged{Renamed: 1, Skipped: 2, Aliased: "x", P: ptr(3)})
	same(t, tagged{})
	same(t, omit{})
	same(t, omit{A: 1, S: "s", P: ptr(0), M: map[string]int{}, L: []int{}, T: time.Unix(1, 0), X: 0, N: inner{}, E: innerOmit{1}, F: math.Copysign(0, -1), Q: [2]int{}, K: true})
	same(t, omit{X: []int(nil), F: math.NaN()})
	same(t, withEmbed{Base{1, "n"}, 2})
	same(t, withEmbedPtr{&Base{1, "n"}, 2})
	same(t, withEmbedPtr{nil, 2})
	same(t, withEmbedPtrOmit{nil, 2})
	same(t, withEmbedPtrOmit{&Base{}, 0})
	same(t, shadow{Base{1, "a"}, "b"})
	same(t, shadowInline{Base{1, "a"}, "b"})
	same(t, noInline{Base{1, "a"}, 2})
	same(t, embedTime{time.Unix(5, 0), 1})
	same(t, asArray{A: 1, B: "b"})
	same(t, Node{Val: 1, Next: &Node{Val: 2}, Kids: []Node{{Val: 3}}, M: map[string]*Node{"a": {Val: 4}}})
	same(t, withAny{V: map[string]any{"k": []any{int8(1), "s", true, nil, 1.5, float32(2), []byte("b")}}, L: []any{}, M: map[string]any{}})
	same(t, withAny{V: basic{I: 5}})
	same(t, withAny{V: &Base{ID: 1}})
	same(t, mapKeys{I: map[int]string{1: "a"}, U8: map[uint8]bool{2: true}, F: map[float64]int{1.5: 1}, B: map[bool]int{true: 1},
		A: map[[2]int]int{{1, 2}: 3}, S: map[inner]int{{1, 2}: 3}, X: map[any]int{"k": 1}, P: map[myString]myInt{"a": 1}})
	same(t, myMap{"a": myMap(nil)})
}

type uint8x uint8

// LostField looks into embedded structs the way the codec inlines them,
// through pointers too.
func TestLostFieldThroughEmbeddedPointer(t *testing.T) {
	type Base struct{ A, B int }
	type Hidden struct {
		A int
		B int `msgpack:"-"`
	}
	type Twice struct{ *Hidden }
	for _, c := range []struct {
		typ  reflect.Type
		want string
	}{
		{reflect.TypeFor[struct{ Base }](), ""},
		{reflect.TypeFor[struct {
			*Base
			C int
		}](), ""},
		{reflect.TypeFor[struct{ *Hidden }](), "B"},
		{reflect.TypeFor[struct{ *Twice }](), "B"},
	} {
		if got, err := LostField(c.typ); err != nil || got != c.want {
			t.Errorf("LostField(%v) = %q, %v; want %q", c.typ, got, err, c.want)
		}
	}
}
