package codec

import (
	"bytes"
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// TestHugeHeaders: a length the input cannot back fails at once, with
// no allocation for it.
func TestHugeHeaders(t *testing.T) {
	for _, h := range []string{"ddffffffff", "dcffff", "dfffffffff", "deffff", "dbffffffff", "c6ffffffff", "c9ffffffff01", "9f"} {
		data := mustHex(h)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		decodeErr[[]int64](t, data, ErrMalformedOrMismatch)
		decodeErr[any](t, data, ErrMalformedOrMismatch)
		decodeErr[[]Record](t, data, ErrMalformedOrMismatch)
		decodeErr[map[string]Record](t, data, ErrMalformedOrMismatch)
		decodeErr[string](t, data, ErrMalformedOrMismatch)
		decodeErr[[][]any](t, data, ErrMalformedOrMismatch)
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
			t.Errorf("%s: allocated %d bytes", h, n)
		}
		if _, err := Skip(data); !errors.Is(err, ErrMalformed) {
			t.Errorf("Skip(%s): %v", h, err)
		}
	}
	// Large elements grow with the input instead of being allocated up
	// front: 100,000 elements of 8 KiB claimed by 100,003 bytes.
	type big struct{ A [1024]int64 }
	data := append(mustHex("dd000186a0"), bytes.Repeat([]byte{0x80}, 99_999)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	decodeErr[[]big](t, data, ErrMalformed)
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 2<<30 {
		t.Errorf("allocated %d bytes", n)
	}
}

// ErrMalformedOrMismatch matches either kind (a header that does not fit
// the type may be refused before its length is read).
var ErrMalformedOrMismatch = errors.New("malformed or mismatch")

func init() {
	kindMatchers[ErrMalformedOrMismatch] = func(err error) bool {
		return errors.Is(err, ErrMalformed) || errors.Is(err, ErrMismatch)
	}
}

var kindMatchers = map[error]func(error) bool{}

func TestDepth(t *testing.T) {
	nest := func(n int, open byte, leaf byte) []byte {
		return append(bytes.Repeat([]byte{open}, n), leaf)
	}
	decodeOK[any](t, nest(MaxDepth, 0x91, 0xc0))
	if e := decodeErr[any](t, nest(MaxDepth+1, 0x91, 0xc0), ErrTooDeep); !strings.Contains(e.Path, "…") {
		t.Errorf("path not cut: %.100s", e.Path)
	}
	decodeErr[any](t, nest(4<<20, 0x91, 0xc0), ErrTooDeep)
	decodeErr[[]any](t, nest(4<<20, 0x91, 0xc0), ErrTooDeep)
	// Maps: {"": {"": ...}}.
	deep := append(bytes.Repeat([]byte{0x81, 0xa0}, MaxDepth+1), 0xc0)
	decodeErr[map[string]any](t, deep, ErrTooDeep)
	// Recursive types.
	decodeErr[Node](t, append(bytes.Repeat([]byte{0x81, 0xa4, 'N', 'e', 'x', 't'}, MaxDepth+1), 0xc0), ErrTooDeep)
	if n, err := Skip(nest(4<<20, 0x91, 0xc0)); err != nil || n != 4<<20+1 {
		t.Fatalf("Skip: %d, %v", n, err)
	}
}

type P *P

func TestCycles(t *testing.T) {
	n := &Node{Val: 1}
	n.Next = n
	c, _ := For[Node]()
	if _, err := c.Append(nil, n); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("cyclic pointer: %v", err)
	}
	m := map[string]any{}
	m["self"] = m
	cm, _ := For[map[string]any]()
	if _, err := cm.Append(nil, &m); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("cyclic map: %v", err)
	}
	s := []any{nil}
	s[0] = s
	cs, _ := For[[]any]()
	if err := cs.Encode(&bytes.Buffer{}, &s); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("cyclic slice: %v", err)
	}
	var p P
	p = &p
	cp, err := For[P]()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cp.Append(nil, &p); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("type P *P: %v", err)
	}
	// A struct holding one is compiled without msgpack/v5 (which
	// recurses forever on P).
	type holdsP struct{ X P }
	ch, err := For[holdsP]()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Append(nil, &holdsP{X: p}); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("holdsP: %v", err)
	}
	// P decodes from any non-nil value without consuming input.
	var q P
	if err := cp.Decode([]byte{0x01}, &q); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("type P *P: %v", err)
	}
}

type sample struct {
	Name  string
	Tags  []string
	M     map[string]int
	T     time.Time
	F     float64
	Any   any
	Inner *Node
	Bin   []byte
	Arr   [2]int16
}

func sampleValue() sample {
	return sample{
		Name: "sample", Tags: []string{"a", strings.Repeat("b", 40)}, M: map[string]int{"k": 1000},
		T: time.Unix(1e10, 5), F: 1.5, Any: []any{"x", map[string]any{"y": int64(1)}, []byte{1}},
		Inner: &Node{Val: 2, Kids: []Node{{Val: 3}}}, Bin: make([]byte, 300), Arr: [2]int16{-1, 1},
	}
}

// TestTruncation: every proper prefix of a value is malformed, and bytes
// after it too.
func TestTruncation(t *testing.T) {
	v := sampleValue()
	data := v5Marshal(t, &v)
	for i := range len(data) {
		decodeErr[sample](t, data[:i], ErrMalformed)
		decodeErr[any](t, data[:i], ErrMalformed)
		if _, err := Skip(data[:i]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("Skip of %d bytes: %v", i, err)
		}
	}
	decodeErr[sample](t, append(data, 0xc0), ErrMalformed)
	got := decodeOK[sample](t, data)
	if got.Name != v.Name || got.Inner.Kids[0].Val != 3 || got.M["k"] != 1000 {
		t.Fatalf("decoded %+v", got)
	}
	if n, err := Skip(append(data, 1, 2, 3)); err != nil || n != len(data) {
		t.Fatalf("Skip: %d, %v", n, err)
	}
	decodeErr[any](t, []byte{0xc1}, ErrMalformed)
	decodeErr[int](t, []byte{0xc1}, ErrMalformed)
}

// TestNilEmpty: nil and empty stay apart both ways, as in msgpack/v5.
func TestNilEmpty(t *testing.T) {
	type S struct {
		L  []int
		B  []byte
		M  map[string]int
		P  *int
		A  any
		SS []string
	}
	same(t, S{})
	same(t, S{L: []int{}, B: []byte{}, M: map[string]int{}, P: new(int), A: []any{}, SS: []string{}})
	got := decodeOK[S](t, v5Marshal(t, &S{L: []int{}, B: []byte{}, M: map[string]int{}}))
	if got.L == nil || got.B == nil || got.M == nil {
		t.Fatalf("empty became nil: %+v", got)
	}
	got = decodeOK[S](t, v5Marshal(t, &S{}))
	if got.L != nil || got.B != nil || got.M != nil {
		t.Fatalf("nil became empty: %+v", got)
	}
	// Decoding nil into a struct zeroes it; into an array leaves it.
	x := S{L: []int{1}}
	c, _ := For[S]()
	if err := c.Decode([]byte{0xc0}, &x); err != nil || x.L != nil {
		t.Fatalf("nil into struct: %+v %v", x, err)
	}
	arr := [2]int{1, 2}
	ca, _ := For[[2]int]()
	if err := ca.Decode([]byte{0xc0}, &arr); err != nil || arr != [2]int{1, 2} {
		t.Fatalf("nil into array: %v %v", arr, err)
	}
}

// TestTimeForms: the three timestamp sizes, and what they decode to.
func TestTimeForms(t *testing.T) {
	for _, c := range []struct {
		tm  time.Time
		hex string
	}{
		{time.Unix(1, 0), "d6ff00000001"},
		{time.Unix(1, 1), "d7ff0000000400000001"},
		{time.Unix(-1, 0), "c70cff00000000ffffffffffffffff"},
		{time.Unix(1<<34, 0), "c70cff000000000000000400000000"},
	} {
		c := c
		same(t, c.tm)
		got, err := For[time.Time]()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := got.Append(nil, &c.tm)
		if string(b) != string(mustHex(c.hex)) {
			t.Errorf("%v: %x, want %s", c.tm, b, c.hex)
		}
		d := decodeOK[time.Time](t, b)
		if !d.Equal(c.tm) || d.Location() != time.Local {
			t.Errorf("%v decoded as %v", c.tm, d)
		}
	}
	if d := decodeOK[time.Time](t, v5Marshal(t, &time.Time{})); d != (time.Time{}) {
		t.Errorf("zero time decoded as %#v", d)
	}
	decodeErr[time.Time](t, mustHex("d6fe00000001"), ErrMismatch) // ext 2
	decodeErr[time.Time](t, mustHex("d5ff0000"), ErrMismatch)     // 2 bytes
	decodeErr[time.Time](t, mustHex("01"), ErrMismatch)
}

// TestCheck: refusals name the type and path.
func TestCheck(t *testing.T) {
	type Config struct {
		Name  string
		Hooks []func()
	}
	type withErr struct{ E error }
	type withStringer struct{ S interface{ String() string } }
	type withChan struct {
		C chan int `msgpack:"-"`
		//lint:ignore U1000 an unexported field is ignored
		c chan int
		X int
	}
	for _, c := range []struct {
		t    reflect.Type
		want string
	}{
		{reflect.TypeFor[Config](), "Config.Hooks[]: func() cannot be encoded"},
		{reflect.TypeFor[withErr](), "withErr.E: error (a non-empty interface) cannot be decoded"},
		{reflect.TypeFor[withStringer](), "non-empty interface"},
		{reflect.TypeFor[map[string]complex64](), "complex64 cannot be encoded"},
		{reflect.TypeFor[[]unsafe.Pointer](), "unsafe.Pointer cannot be encoded"},
		{reflect.TypeFor[*uintptr](), "uintptr cannot be encoded"},
		{reflect.TypeFor[chan int](), "chan int cannot be encoded"},
		{reflect.TypeFor[struct {
			S string `msgpack:",intern"`
		}](), "intern"},
	} {
		err := Check(c.t)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check(%v) = %v, want %q", c.t, err, c.want)
		}
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[Node](), reflect.TypeFor[withChan](), reflect.TypeFor[P](),
		reflect.TypeFor[customChan](), reflect.TypeFor[sample]()} {
		if err := Check(typ); err != nil {
			t.Errorf("Check(%v): %v", typ, err)
		}
	}
	if _, err := For[Config](); !errors.Is(err, ErrUnsupported) {
		t.Errorf("For[Config]: %v", err)
	}
}

func TestSkipAllocates(t *testing.T) {
	v := sampleValue()
	data := v5Marshal(t, &v)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := Skip(data); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Skip allocates %v times", n)
	}
}
