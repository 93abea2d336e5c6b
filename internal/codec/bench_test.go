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

var (
	benchA    map[string]Record
	benchAEnc []byte
	benchC    []Record // A's records as one slice: the parallel slice paths
	benchCEnc []byte
	benchB    [][]Record
	benchBEnc [][]byte
	benchOnce sync.Once
)

func benchData(b *testing.B) {
	benchOnce.Do(func() {
		r := rand.New(rand.NewPCG(1, 2))
		benchA = make(map[string]Record, 1_000_000)
		for i := range 1_000_000 {
			benchA[fmt.Sprintf("key-%08d", i)] = newRecord(r)
		}
		var err error
		if benchAEnc, err = msgpack.Marshal(benchA); err != nil {
			panic(err)
		}
		for _, v := range benchA {
			benchC = append(benchC, v)
		}
		if benchCEnc, err = msgpack.Marshal(benchC); err != nil {
			panic(err)
		}
		benchB = make([][]Record, 1000)
		benchBEnc = make([][]byte, 1000)
		for i := range benchB {
			s := make([]Record, 1333)
			for j := range s {
				s[j] = newRecord(r)
			}
			benchB[i] = s
			if benchBEnc[i], err = msgpack.Marshal(s); err != nil {
				panic(err)
			}
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

func BenchmarkEncodeA(b *testing.B) {
	modes(b, func(b *testing.B) {
		bw := bufio.NewWriterSize(io.Discard, 64<<10)
		enc := msgpack.NewEncoder(bw)
		for b.Loop() {
			if err := enc.Encode(benchA); err != nil {
				b.Fatal(err)
			}
			bw.Flush()
		}
		b.SetBytes(int64(len(benchAEnc)))
	}, func(b *testing.B) {
		c, _ := For[map[string]Record]()
		for b.Loop() {
			if err := c.Encode(io.Discard, &benchA); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(len(benchAEnc)))
	})
}

func BenchmarkDecodeA(b *testing.B) {
	modes(b, func(b *testing.B) {
		for b.Loop() {
			var m map[string]Record
			if err := msgpack.Unmarshal(benchAEnc, &m); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(len(benchAEnc)))
	}, func(b *testing.B) {
		c, _ := For[map[string]Record]()
		for b.Loop() {
			var m map[string]Record
			if err := c.Decode(benchAEnc, &m); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(len(benchAEnc)))
	})
}

func benchBBytes() (n int64) {
	for _, e := range benchBEnc {
		n += int64(len(e))
	}
	return n
}

func BenchmarkEncodeB(b *testing.B) {
	modes(b, func(b *testing.B) {
		bw := bufio.NewWriterSize(io.Discard, 64<<10)
		enc := msgpack.NewEncoder(bw)
		for b.Loop() {
			for i := range benchB {
				if err := enc.Encode(benchB[i]); err != nil {
					b.Fatal(err)
				}
				bw.Flush()
			}
		}
		b.SetBytes(benchBBytes())
	}, func(b *testing.B) {
		c, _ := For[[]Record]()
		for b.Loop() {
			for i := range benchB {
				if err := c.Encode(io.Discard, &benchB[i]); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.SetBytes(benchBBytes())
	})
}

func BenchmarkDecodeB(b *testing.B) {
	modes(b, func(b *testing.B) {
		for b.Loop() {
			for _, e := range benchBEnc {
				var s []Record
				if err := msgpack.Unmarshal(e, &s); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.SetBytes(benchBBytes())
	}, func(b *testing.B) {
		c, _ := For[[]Record]()
		for b.Loop() {
			for _, e := range benchBEnc {
				var s []Record
				if err := c.Decode(e, &s); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.SetBytes(benchBBytes())
	})
}

func BenchmarkEncodeC(b *testing.B) {
	modes(b, func(b *testing.B) {
		bw := bufio.NewWriterSize(io.Discard, 64<<10)
		enc := msgpack.NewEncoder(bw)
		for b.Loop() {
			if err := enc.Encode(benchC); err != nil {
				b.Fatal(err)
			}
			bw.Flush()
		}
		b.SetBytes(int64(len(benchCEnc)))
	}, func(b *testing.B) {
		c, _ := For[[]Record]()
		for b.Loop() {
			if err := c.Encode(io.Discard, &benchC); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(len(benchCEnc)))
	})
}

func BenchmarkDecodeC(b *testing.B) {
	modes(b, func(b *testing.B) {
		for b.Loop() {
			var s []Record
			if err := msgpack.Unmarshal(benchCEnc, &s); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(len(benchCEnc)))
	}, func(b *testing.B) {
		c, _ := For[[]Record]()
		for b.Loop() {
			var s []Record
			if err := c.Decode(benchCEnc, &s); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(len(benchCEnc)))
	})
}
