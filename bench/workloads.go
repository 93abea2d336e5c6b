package main

import (
	"fmt"
	"math/rand"
	"time"
)

// Record is the element of every workload's states.
type Record struct {
	Name    string
	Count   int64
	Updated time.Time
	Tags    []string
	Score   float64
}

var tagPool = []string{"red", "green", "blue", "archived", "vip", "new"}

func makeRecord(rng *rand.Rand, i int) Record {
	return Record{
		Name:    fmt.Sprintf("user-%09d", rng.Intn(1_000_000_000)),
		Count:   rng.Int63n(1_000_000),
		Updated: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rng.Int63n(int64(365 * 24 * time.Hour)))),
		Tags:    tagPool[:rng.Intn(5)],
		Score:   rng.Float64() * 100,
	}
}

// workload is a set of named states. Values are replaced, never changed
// in place, as instadump requires.
type workload struct {
	name   string
	about  string
	names  []string
	values []any
	// fresh returns a new value for state i (a change).
	fresh func(i int, round int) any
	// typed returns a pointer to decode state i into.
	typed func(i int) any
}

// workloadA: one state holding a map of n records.
func workloadA(n int) *workload {
	rng := rand.New(rand.NewSource(1))
	m := make(map[string]Record, n)
	for i := 0; i < n; i++ {
		m[fmt.Sprintf("key-%08d", i)] = makeRecord(rng, i)
	}
	return &workload{
		name: "A", about: fmt.Sprintf("one state: map[string]Record of %d entries", n),
		names: []string{"big"}, values: []any{m},
		fresh: func(int, int) any { return m }, // the same map, Set again: a full save
		typed: func(int) any { return new(map[string]Record) },
	}
}

// workloadB: n states of about size bytes each ([]Record).
func workloadB(n, size int) *workload {
	per := size / 75 // msgpack bytes per record, about
	w := &workload{name: "B", about: fmt.Sprintf("%d states of about %d KB ([]Record)", n, size>>10)}
	gen := func(i, round int) any {
		rng := rand.New(rand.NewSource(int64(i*7919 + round)))
		recs := make([]Record, per)
		for k := range recs {
			recs[k] = makeRecord(rng, k)
		}
		return recs
	}
	for i := 0; i < n; i++ {
		w.names = append(w.names, fmt.Sprintf("state-%04d", i))
		w.values = append(w.values, gen(i, 0))
	}
	w.fresh = gen
	w.typed = func(int) any { return new([]Record) }
	return w
}

// workloadC: one []byte of mb MiB, half compressible text, half random.
func workloadC(mb int) *workload {
	rng := rand.New(rand.NewSource(3))
	b := make([]byte, mb<<20)
	words := []byte("the quick brown fox jumps over the lazy dog ")
	for i := 0; i < len(b)/2; i++ {
		b[i] = words[(i+rng.Intn(3))%len(words)]
	}
	rng.Read(b[len(b)/2:])
	return &workload{
		name: "C", about: fmt.Sprintf("one []byte of %d MiB, half compressible, half random", mb),
		names: []string{"blob"}, values: []any{b},
		fresh: func(int, int) any { return b },
		typed: func(int) any { return new([]byte) },
	}
}
