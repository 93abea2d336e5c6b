package inspect

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// toJSON converts one msgpack value, compact, as WriteJSON does.
func toJSON(raw []byte, indent int) (string, error) {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	r := &reader{b: raw}
	err := (&jsonWriter{w: bw}).value(r, 0, indent)
	if err == nil && r.pos != len(raw) {
		err = r.fail("%d bytes after the value", len(raw)-r.pos)
	}
	bw.Flush()
	return buf.String(), err
}

func TestJSONWithoutTypes(t *testing.T) {
	type inner struct{ When time.Time }
	for _, tc := range []struct {
		in   any
		want string
	}{
		{map[int]string{1: "a"}, `{"1":"a"}`},
		{map[string]int{"b": 2, "a": 1, "c": 3}, `{"a":1,"b":2,"c":3}`},
		{[]byte{1, 2, 3}, `"AQID"`},
		{inner{time.Date(2026, 11, 25, 8, 0, 0, 5, time.UTC)}, `{"When":"2026-11-25T08:00:00.000000005Z"}`},
		{time.Unix(1<<35, 0), `"3058-10-26T03:46:08Z"`},
		{math.NaN(), `"NaN"`},
		{float32(1.5), `1.5`},
		{"quote\"\n\u2028", `"quote\"\n\u2028"`},
		{[]any{nil, true, int64(-3), uint64(1) << 63, 1.5, "s"}, `[null,true,-3,9223372036854775808,1.5,"s"]`},
		{map[any]any{[2]int{1}: 2, true: "t"}, `{"[1,0]":2,"true":"t"}`},
		{map[[3]byte]int{{1, 2, 3}: 1}, `{"AQID":1}`}, // a binary key as its base64, as a value is written
		{[]any{}, `[]`},
		{map[string]any{}, `{}`},
	} {
		raw, err := msgpack.Marshal(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := toJSON(raw, -1)
		if err != nil || got != tc.want {
			t.Fatalf("%v: %s (%v), want %s", tc.in, got, err, tc.want)
		}
		// Indented, it is the same JSON.
		ind, err := toJSON(raw, 0)
		var a, b any
		if err != nil || json.Unmarshal([]byte(ind), &a) != nil || json.Unmarshal([]byte(got), &b) != nil {
			t.Fatalf("%v: indented %q (%v)", tc.in, ind, err)
		}
	}
	for _, bad := range [][]byte{{}, {0xc1}, {0x92, 0x01}, {0x01, 0x02}, {0xdd, 0xff, 0xff, 0xff, 0xff, 0x00}} {
		if got, err := toJSON(bad, 0); !errors.Is(err, errMsgpack) {
			t.Fatalf("% x: %q %v", bad, got, err)
		}
	}
}

// Declared lengths are not trusted, and nesting is bounded: a 6-byte
// array of 4G elements and arrays nested a million deep are errors, fast
// and small.
func TestJSONBounds(t *testing.T) {
	deep := bytes.Repeat([]byte{0x91}, 1<<20)
	deep = append(deep, 0xc0)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, raw := range [][]byte{{0xdd, 0xff, 0xff, 0xff, 0xff, 0x01}, {0xdf, 0xff, 0xff, 0xff, 0xff, 0x01}, deep} {
		if _, err := toJSON(raw, 0); err == nil || !strings.Contains(err.Error(), "msgpack") {
			t.Fatalf("% .8x...: %v", raw, err)
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<20 {
		t.Fatalf("allocated %d bytes", got)
	}
}

func FuzzJSON(f *testing.F) {
	for _, v := range []any{map[string]any{"a": []any{1, "x", nil}}, time.Now(), []byte("b"), 1.5} {
		raw, _ := msgpack.Marshal(v)
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, err := toJSON(raw, 0)
		if err != nil {
			return
		}
		var v any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("% x gave invalid JSON %q: %v", raw, out, err)
		}
	})
}

// Binary values are written as base64 streamed to the output, not built
// as a string first: the JSON is the same as base64.StdEncoding gives,
// for small and multi-MB values, and writing a 32 MB one allocates far
// less than its base64 text (43 MB).
func TestJSONBinaryStreamed(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 4, 57, 1000, 3<<20 + 1, 32 << 20} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i*7 + i>>8)
		}
		raw, err := msgpack.Marshal(data)
		if err != nil {
			t.Fatal(err)
		}
		got, err := toJSON(raw, 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := `"` + base64.StdEncoding.EncodeToString(data) + `"`; got != want {
			t.Fatalf("%d bytes: JSON differs from base64.StdEncoding (%d vs %d bytes)", n, len(got), len(want))
		}
		if n < 32<<20 {
			continue
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err = (&jsonWriter{w: bufio.NewWriter(io.Discard)}).value(&reader{b: raw}, 0, 0)
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; err != nil || alloc > 1<<20 {
			t.Fatalf("writing %d bytes as base64 allocated %d KB (%v)", n, alloc>>10, err)
		}
	}
	ext := []byte{0xc7, 0x03, 0x05, 0xff, 0x00, 0x7f}
	if got, err := toJSON(ext, -1); err != nil || got != `{"msgpack_ext": 5, "data": "/wB/"}` {
		t.Fatalf("extension: %s %v", got, err)
	}
}

// Maps as keys of maps as keys, 24 deep: each level escapes the quotes
// of the one inside it, so the text would double at every level; a key's
// text is cut at maxKeyText instead.
func TestJSONNestedKeysBounded(t *testing.T) {
	raw := []byte{0xc0} // nil, the innermost key's value and key
	for range 24 {
		raw = append(append([]byte{0x81}, raw...), 0x01) // {raw: 1}
	}
	out, err := toJSON(raw, -1)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) > 1<<16 {
		t.Fatalf("24 levels of map keys gave %d bytes of JSON", len(out))
	}
}
