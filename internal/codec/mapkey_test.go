package codec

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// unloadableKey requires encoding v to fail with ErrUnsupported naming
// keyType, on Append and Encode, where msgpack/v5 encodes it and then
// cannot decode it.
func unloadableKey[T any](t *testing.T, v T, keyType string) {
	t.Helper()
	c, err := For[T]()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Append(nil, &v); !errors.Is(err, ErrUnsupported) || !errors.Is(err, errUnloadableKey) || !errors.Is(err, ErrNeverLoads) ||
		!strings.Contains(err.Error(), keyType) || !strings.Contains(err.Error(), "never load") {
		t.Fatalf("Append(%T) with a %s key: %v", v, keyType, err)
	}
	if err := c.Encode(&bytes.Buffer{}, &v); !errors.Is(err, errUnloadableKey) {
		t.Fatalf("Encode(%T) with a %s key: %v", v, keyType, err)
	}
	// msgpack/v5 writes it, and cannot read it back.
	if data, err := v5Try(&v); err != nil {
		t.Fatalf("msgpack/v5 fails to encode %T: %v", v, err)
	} else if _, err := v5Unmarshal(data, reflect.TypeFor[T]()); err == nil {
		t.Fatalf("msgpack/v5 decodes %T with a %s key", v, keyType)
	}
}

type ifaceKeyStruct struct {
	Name string
	K    any
}

// A map whose keys hold interfaces is refused when a key's dynamic value
// would decode as an unhashable value ([]interface{},
// map[string]interface{}, []byte): on every encoding path (entry by
// entry, in groups, on several goroutines), wherever the map is.
func TestUnloadableMapKeysRefused(t *testing.T) {
	unloadableKey(t, map[any]int{[2]int{1, 2}: 1}, "[2]int")
	unloadableKey(t, map[any]string{Base{ID: 1}: "x"}, "codec.Base") // grouped: string values
	unloadableKey(t, map[any]int{&Base{ID: 1}: 1}, "*codec.Base")
	unloadableKey(t, map[any]int{[3]byte{1, 2, 3}: 1}, "[3]uint8")
	unloadableKey(t, map[[1]any]int{{[2]int{1, 2}}: 1}, "[1]interface {}")
	unloadableKey(t, map[ifaceKeyStruct]int{{Name: "a", K: Base{}}: 1}, "codec.ifaceKeyStruct")
	unloadableKey(t, []map[any]int{nil, {[2]int{1, 2}: 1}}, "[2]int")
	unloadableKey(t, struct{ M map[any]bool }{map[any]bool{struct{}{}: true}}, "struct {}")
	big := map[any]int{}
	for i := range parMinElems + 10 {
		big[i] = i
	}
	big[[2]int{7, 7}] = 1
	unloadableKey(t, big, "[2]int") // on several goroutines
}

// Keys whose dynamic values decode as hashable ones are written as
// before, byte for byte.
func TestLoadableInterfaceKeys(t *testing.T) {
	for _, k := range []any{nil, 1, -1, int8(3), uint64(1 << 63), "s", strings.Repeat("x", 40), true, 1.5, float32(2),
		time.Unix(1e9, 5).UTC(), marshalVal{"v"}, &marshalPtr{3}, (*Base)(nil)} {
		same(t, map[any]int{k: 1})
		same(t, map[[2]any]string{{k, 2}: "v"})
		same(t, map[ifaceKeyStruct]int{{Name: "n", K: k}: 1})
	}
}

// A map encoding that fails leaves nothing of the failing entry in the
// pooled key and value variables: a later decode of the same map type
// would decode through a pointer left there, into the program's value.
func TestFailedMapEncodeLeavesNoEntry(t *testing.T) {
	c, _ := For[map[any]int8]()
	for range 10 {
		bad := map[any]int8{&Base{ID: 1}: 1} // refused: the key would load as a map
		if _, err := c.Append(nil, &bad); !errors.Is(err, errUnloadableKey) {
			t.Fatalf("Append: %v", err)
		}
		var back map[any]int8
		if err := c.Decode([]byte{0x81, 0xcc, 0xff, 0x01}, &back); err != nil || back[uint8(255)] != 1 {
			t.Fatalf("decoding after a failed encode: %v, %v", back, err)
		}
	}
	cv, _ := For[map[int]any]()
	for range 10 {
		p := &panicky{13}
		bad := map[int]any{1: p} // its encoder panics
		if _, err := cv.Append(nil, &bad); !errors.Is(err, ErrFallback) {
			t.Fatalf("Append: %v", err)
		}
		var back map[int]any
		if err := cv.Decode([]byte{0x81, 0x01, 0x05}, &back); err != nil || back[1] != int8(5) || p.N != 13 {
			t.Fatalf("decoding after a failed encode: %v, %v; the value encoded before holds %d", back, err, p.N)
		}
	}
}

// sliceHolder is a struct with a slice; a pointer to one is a hashable
// key that loads as a map[string]interface{}.
type sliceHolder struct{ S []int64 }

// A key whose encoding is larger than the streaming buffer (a pointer to
// a struct with a long slice, which Encode flushes element by element)
// is checked on its own bytes, whether its encoder flushed or not: on
// every encoding path, with entries before it in the buffer.
func TestLargeInterfaceKeyChecked(t *testing.T) {
	big := &sliceHolder{S: make([]int64, flushSize/4)} // 9 bytes each: over flushSize
	for i := range big.S {
		big.S[i] = 1 << 40
	}
	withEntries := func(n int) map[any]int {
		m := map[any]int{big: -1}
		for i := range n {
			m[i] = i
		}
		return m
	}
	const typ = "*codec.sliceHolder"
	unloadableKey(t, map[any]int{big: 1}, typ)
	unloadableKey(t, withEntries(100), typ)
	unloadableKey(t, map[any]string{big: "x", "a": "b"}, typ)                                                // grouped
	unloadableKey(t, map[ifaceKeyStruct]int{{Name: "a", K: big}: 1, {Name: "b"}: 2}, "codec.ifaceKeyStruct") // interface inside
	unloadableKey(t, withEntries(parMinElems+10), typ)                                                       // on several goroutines
	parallelOff.Store(true)
	defer parallelOff.Store(false)
	unloadableKey(t, withEntries(100), typ) // the slice encoded on one goroutine, flushing
}
