package inspect

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func TestDecodeWithoutTypes(t *testing.T) {
	type inner struct{ When time.Time }
	for _, tc := range []struct {
		in   any
		want string
	}{
		{map[int]string{1: "a"}, `{"1":"a"}`},
		{[]byte{1, 2, 3}, `"AQID"`},
		{inner{time.Date(2026, 11, 25, 8, 0, 0, 5, time.UTC)}, `{"When":"2026-11-25T08:00:00.000000005Z"}`},
		{math.NaN(), `"NaN"`},
		{[]any{nil, true, int64(-3), uint64(1) << 63, 1.5, "s"}, `[null,true,-3,9223372036854775808,1.5,"s"]`},
	} {
		raw, err := msgpack.Marshal(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		v, err := Decode(raw)
		if err != nil {
			t.Fatalf("%v: %v", tc.in, err)
		}
		got, err := json.Marshal(v)
		if err != nil || string(got) != tc.want {
			t.Fatalf("%v: %s (%v), want %s", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range [][]byte{{}, {0xc1}, {0x92, 0x01}, {0x01, 0x02}} {
		if _, err := Decode(bad); err == nil {
			t.Fatalf("% x decoded", bad)
		}
	}
}
