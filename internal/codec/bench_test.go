package codec

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Run: go test -run '^$' -bench . -count 5 ./internal/codec
// Each benchmark has a msgpack/v5 baseline ("v5"), the codec with its
// parallel paths off ("serial") and on ("parallel"), in the same run.
// A is a map of 1M records, B 1000 slices of 1333 records (below the
// parallel threshold), C the records of A as one slice.

type Record struct {
	Name    string
	Count   int64
	Updated time.Time
	Tags    []string
	Score   float64
}

var benchTags = []string{"red", "green", "blue", "archived", "vip", "new"}

func newRecord(r *rand.Rand) Record {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return Record{
		Name:    fmt.Sprintf("user-%09d", r.IntN(1e9)),
		Count:   r.Int64N(1e6),
		Updated: base.Add(time.Duration(r.Int64N(int64(365 * 24 * time.Hour)))),
		Tags:    benchTags[:r.IntN(5)],
		Score:   r.Float64() * 100,
	}
}

// A benchSet is the values of one benchmark and their msgpack/v5
// encodings.
type benchSet[T any] struct {
	vals []T
	encs [][]byte
}

// add adds v and its msgpack/v5 encoding to s.
func (s *benchSet[T]) add(v T) {
	e, err := msgpack.Marshal(v)
	if err != nil {
		panic(err)
	}
	s.vals = append(s.vals, v)
	s.encs = append(s.encs, e)
}

// bytes is the size of the encodings.
func (s *benchSet[T]) bytes() (n int64) {
	for _, e := range s.encs {
		n += int64(len(e))
	}
	return n
}

var (
	benchA    benchSet[map[string]Record]
	benchB    benchSet[[]Record]
	benchC    benchSet[[]Record] // A's records as one slice: the parallel slice paths
	benchOnce sync.Once
)

func benchData(b *testing.B) {
	benchOnce.Do(func() {
		r := rand.New(rand.NewPCG(1, 2))
		a := make(map[string]Record, 1_000_000)
		for i := range 1_000_000 {
			a[fmt.Sprintf("key-%08d", i)] = newRecord(r)
		}
		benchA.add(a)
		var c []Record
		for _, v := range a {
			c = append(c, v)
		}
		benchC.add(c)
		for range 1000 {
			s := make([]Record, 1333)
			for j := range s {
				s[j] = newRecord(r)
			}
			benchB.add(s)
		}
	})
	b.ResetTimer()
}

// modes runs f as the three sub-benchmarks.
func modes(b *testing.B, v5 func(b *testing.B), codec func(b *testing.B)) {
	b.Run("v5", func(b *testing.B) { benchData(b); v5(b) })
	b.Run("serial", func(b *testing.B) {
		benchData(b)
		parallelOff.Store(true)
		defer parallelOff.Store(false)
		codec(b)
	})
	b.Run("parallel", func(b *testing.B) { benchData(b); codec(b) })
}

// benchEncode measures encoding each value of s, in the three modes.
func benchEncode[T any](b *testing.B, s *benchSet[T]) {
	modes(b, func(b *testing.B) {
		bw := bufio.NewWriterSize(io.Discard, 64<<10)
		enc := msgpack.NewEncoder(bw)
		benchEach(b, s, s.vals, func(v *T) error {
			err := enc.Encode(*v)
			bw.Flush()
			return err
		})
	}, func(b *testing.B) {
		c, _ := For[T]()
		benchEach(b, s, s.vals, func(v *T) error { return c.Encode(io.Discard, v) })
	})
}

// benchDecode measures decoding each encoding of s into a new T, in the
// three modes.
func benchDecode[T any](b *testing.B, s *benchSet[T]) {
	modes(b, func(b *testing.B) {
		benchEach(b, s, s.encs, func(e *[]byte) error {
			var v T
			return msgpack.Unmarshal(*e, &v)
		})
	}, func(b *testing.B) {
		c, _ := For[T]()
		benchEach(b, s, s.encs, func(e *[]byte) error {
			var v T
			return c.Decode(*e, &v)
		})
	})
}

// benchEach calls f on each of items (values or encodings of s), once per
// iteration.
func benchEach[T, I any](b *testing.B, s *benchSet[T], items []I, f func(*I) error) {
	for b.Loop() {
		for i := range items {
			if err := f(&items[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.SetBytes(s.bytes())
}

func BenchmarkEncodeA(b *testing.B) { benchEncode(b, &benchA) }
func BenchmarkDecodeA(b *testing.B) { benchDecode(b, &benchA) }
func BenchmarkEncodeB(b *testing.B) { benchEncode(b, &benchB) }
func BenchmarkDecodeB(b *testing.B) { benchDecode(b, &benchB) }
func BenchmarkEncodeC(b *testing.B) { benchEncode(b, &benchC) }
func BenchmarkDecodeC(b *testing.B) { benchDecode(b, &benchC) }
