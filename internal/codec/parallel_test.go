package codec

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// withParallel runs f with the parallel paths on, then off.
func withParallel(t *testing.T, f func(par bool)) {
	t.Helper()
	f(true)
	parallelOff.Store(true)
	defer parallelOff.Store(false)
	f(false)
}

// TestParallelSameAsSerial: large slices and maps give the same bytes and
// values on every core as on one, and the same first error.
func TestParallelSameAsSerial(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	n := 3*parMinElems + 77
	s := make([]Record, n)
	m := make(map[string]Record, n)
	for i := range s {
		s[i] = newRecord(r)
		m[fmt.Sprintf("k%d", i)] = s[i]
	}
	cs, _ := For[[]Record]()
	cm, _ := For[map[string]Record]()
	var outs, outm [2][]byte
	var decs [2][]Record
	var decm [2]map[string]Record
	var errs, errm [2]error
	withParallel(t, func(par bool) {
		i := 0
		if !par {
			i = 1
		}
		var err error
		if outs[i], err = cs.Append(nil, &s); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := cm.Encode(&buf, &m); err != nil {
			t.Fatal(err)
		}
		outm[i] = buf.Bytes()
		if err := cs.Decode(outs[i], &decs[i]); err != nil {
			t.Fatal(err)
		}
		if err := cm.Decode(outm[i], &decm[i]); err != nil {
			t.Fatal(err)
		}
		// A mismatch in the middle, and a truncation.
		bad := bytes.Clone(outs[0])
		at := bytes.Index(bad[len(bad)/2:], []byte("Count")) + len(bad)/2
		bad[at+5] = 0xa1 // a string where an int64 is
		var x []Record
		errs[i] = cs.Decode(bad, &x)
		var y map[string]Record
		errm[i] = cm.Decode(outm[0][:len(outm[0])-3], &y)
	})
	if !bytes.Equal(outs[0], outs[1]) {
		t.Error("slice bytes differ")
	}
	if !bytes.Equal(canonical(outm[0]), canonical(outm[1])) || !bytes.Equal(canonical(outm[0]), canonical(v5Marshal(t, &m))) {
		t.Error("map bytes differ")
	}
	if !deepEqual(decs[0], decs[1]) || !deepEqual(decm[0], decm[1]) || len(decm[0]) != n {
		t.Error("decoded values differ")
	}
	for _, e := range [][2]error{errs, errm} {
		if e[0] == nil || e[1] == nil || e[0].Error() != e[1].Error() {
			t.Errorf("errors differ:\n%v\n%v", e[0], e[1])
		}
	}
	if !errors.Is(errs[0], ErrMismatch) || !errors.Is(errm[0], ErrMalformed) {
		t.Errorf("errors: %v, %v", errs[0], errm[0])
	}
}

// TestStreamingBounded: Encode writes in pieces of about 64 KiB.
func TestStreamingBounded(t *testing.T) {
	s := make([]string, 100000)
	for i := range s {
		s[i] = fmt.Sprint(i)
	}
	c, _ := For[[]string]()
	w := &maxWriter{}
	withParallel(t, func(bool) {
		w.max = 0
		if err := c.Encode(w, &s); err != nil {
			t.Fatal(err)
		}
		if w.max > 1<<20 {
			t.Errorf("a write of %d bytes", w.max)
		}
	})
}

type maxWriter struct{ max int }

func (w *maxWriter) Write(b []byte) (int, error) {
	w.max = max(w.max, len(b))
	return len(b), nil
}
