package instadump

import (
	"bufio"
	"encoding/gob"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Saves measured against a plain gob + fsync + rename of the same state,
// in the same run:
//
//	go test -run '^$' -bench . -benchtime 3x -count 5 .
//
// INSTADUMP_BENCH_MB sets the size of the large state (200 by default).

type benchRecord struct {
	Name    string
	Count   int64
	Updated time.Time
	Tags    []string
	Score   float64
}

func benchMB() int {
	if s := os.Getenv("INSTADUMP_BENCH_MB"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
		panic("INSTADUMP_BENCH_MB must be a positive integer")
	}
	return 200
}

func makeRecords(n int, seed int64) []benchRecord {
	rng := rand.New(rand.NewSource(seed))
	tags := []string{"red", "green", "blue", "archived", "vip"}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := make([]benchRecord, n)
	for i := range recs {
		recs[i] = benchRecord{
			Name:    fmt.Sprintf("user-%09d", rng.Intn(1_000_000_000)),
			Count:   rng.Int63n(1_000_000),
			Updated: base.Add(time.Duration(rng.Int63n(int64(365 * 24 * time.Hour)))),
			Tags:    tags[:rng.Intn(4)],
			Score:   rng.Float64() * 100,
		}
	}
	return recs
}

var (
	bigOnce sync.Once
	bigMap  map[string]benchRecord
	bigSize int
)

// bigState is a map of about benchMB() megabytes as msgpack.
func bigState(b *testing.B) map[string]benchRecord {
	bigOnce.Do(func() {
		const perRecord = 75 // msgpack bytes per entry, measured below
		recs := makeRecords(benchMB()<<20/perRecord, 1)
		bigMap = make(map[string]benchRecord, len(recs))
		for i, r := range recs {
			bigMap[fmt.Sprintf("k%09d", i)] = r
		}
		raw, err := msgpack.Marshal(bigMap)
		if err != nil {
			panic(err)
		}
		bigSize = len(raw)
	})
	b.SetBytes(int64(bigSize))
	return bigMap
}

func BenchmarkSaveFull(b *testing.B) {
	m := bigState(b)
	b.Run("instadump", func(b *testing.B) {
		b.SetBytes(int64(bigSize))
		db, err := Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		big, _ := NewState(db, "big", m)
		other, _ := NewState(db, "other", 0)
		var maxOther, maxSame time.Duration
		for b.Loop() {
			big.Set(m) // dirty: the whole map is written
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var otherWait, sameWait atomic.Int64
			wg.Go(func() { otherWait.Store(int64(longestSet(stop, func(i int) { other.Set(i) }))) })
			wg.Go(func() { sameWait.Store(int64(longestSet(stop, func(int) { big.Set(m) }))) })
			if _, err := db.Save(); err != nil {
				b.Fatal(err)
			}
			close(stop)
			wg.Wait()
			maxOther = max(maxOther, time.Duration(otherWait.Load()))
			maxSame = max(maxSame, time.Duration(sameWait.Load()))
		}
		b.ReportMetric(float64(maxOther.Microseconds()), "max-µs-Set-other")
		b.ReportMetric(float64(maxSame.Microseconds()), "max-µs-Set-saved")
	})
	b.Run("gob+fsync+rename", func(b *testing.B) {
		b.SetBytes(int64(bigSize))
		dir := b.TempDir()
		for b.Loop() {
			if err := gobSave(dir, m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("msgpack-encode-only", func(b *testing.B) {
		b.SetBytes(int64(bigSize))
		for b.Loop() {
			if err := encodeValue(io.Discard, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// longestSet calls set until stop is closed, pausing a little between
// calls, and returns the longest a call took.
func longestSet(stop chan struct{}, set func(int)) time.Duration {
	var longest time.Duration
	for i := 0; ; i++ {
		select {
		case <-stop:
			return longest
		case <-time.After(100 * time.Microsecond):
		}
		t := time.Now()
		set(i)
		longest = max(longest, time.Since(t))
	}
}

func gobSave(dir string, v any) error {
	tmp := filepath.Join(dir, "state.gob.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := gob.NewEncoder(f).Encode(v); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "state.gob")); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// BenchmarkSaveIncremental: 100 states of about benchMB()/100 MB each;
// a save changing 1 of them against one changing all.
func BenchmarkSaveIncremental(b *testing.B) {
	per := benchMB() << 20 / 100 / 75
	vals := make([][]benchRecord, 100)
	for i := range vals {
		vals[i] = makeRecords(per, int64(i))
	}
	db, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	states := make([]*State[[]benchRecord], 100)
	for i := range states {
		states[i], _ = NewState(db, fmt.Sprintf("s%02d", i), vals[i])
	}
	if _, err := db.Save(); err != nil {
		b.Fatal(err)
	}
	for _, changed := range []int{1, 100} {
		b.Run(fmt.Sprintf("changed-%d-of-100", changed), func(b *testing.B) {
			var written int64
			n := 0
			for b.Loop() {
				for k := 0; k < changed; k++ {
					i := (n + k) % 100
					states[i].Set(vals[i])
				}
				n++
				s, err := db.Save()
				if err != nil {
					b.Fatal(err)
				}
				written = s.Bytes
			}
			b.ReportMetric(float64(written), "bytes-written")
		})
	}
}

// BenchmarkSaveOneOfMany: a save that changes one state of many. Its cost
// must follow what changed: with 200k states, within 2x of the same save
// with 1k (compare the two in one run).
func BenchmarkSaveOneOfMany(b *testing.B) {
	for _, n := range []int{1000, 200_000 * benchMB() / 200} {
		b.Run(fmt.Sprint("states=", n), func(b *testing.B) {
			db, err := Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			states := make([]*State[int], n)
			for i := range states {
				states[i], _ = NewState(db, fmt.Sprintf("s%06d", i), i)
			}
			if _, err := db.Save(); err != nil {
				b.Fatal(err)
			}
			k := 0
			for b.Loop() {
				s := states[(k*7919)%n]
				s.Set(s.Get() + 1)
				k++
				if _, err := db.Save(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// heapPeak samples the live heap while a save runs.
type heapPeak struct {
	base, peak int64
	quit, done chan struct{}
}

func liveHeap() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

func startHeapPeak() *heapPeak {
	runtime.GC()
	h := &heapPeak{base: liveHeap(), quit: make(chan struct{}), done: make(chan struct{})}
	h.peak = h.base
	go func() {
		defer close(h.done)
		for {
			select {
			case <-h.quit:
				return
			default:
			}
			h.peak = max(h.peak, liveHeap())
			time.Sleep(50 * time.Microsecond)
		}
	}()
	return h
}

// growth stops sampling and returns the peak growth over the base.
func (h *heapPeak) growth() int64 {
	close(h.quit)
	<-h.done
	return max(0, h.peak-h.base)
}

// BenchmarkSavePeakHeap: peak heap growth during a save that writes every
// state, as a multiple of what it encodes (the target: within 1.5x plus a
// few MiB), for many tiny states, many medium ones and one big one.
func BenchmarkSavePeakHeap(b *testing.B) {
	for _, tc := range []struct {
		name   string
		states int
		size   int // bytes of each state's []byte
	}{
		{"100k-tiny", 100_000 * benchMB() / 200, 8},
		{"1000x100KB", 1000 * benchMB() / 200, 100 << 10},
		{"1x100MB", 1, (100 << 20) * benchMB() / 200},
	} {
		b.Run(tc.name, func(b *testing.B) {
			db, err := Open(b.TempDir(), WithRetain(1))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			rng := rand.New(rand.NewSource(1))
			states := make([]*State[[]byte], tc.states)
			for i := range states {
				states[i], _ = NewState(db, fmt.Sprintf("s%06d", i), []byte(nil))
			}
			var ratios []float64
			for round := 0; b.Loop(); round++ {
				var encoded int64
				for _, s := range states {
					v := make([]byte, tc.size)
					rng.Read(v)
					s.Set(v)
					encoded += int64(tc.size) + 5 // msgpack bin header, at most
				}
				peak := startHeapPeak()
				if _, err := db.Save(); err != nil {
					b.Fatal(err)
				}
				growth := peak.growth()
				ratios = append(ratios, float64(growth)/float64(encoded))
				b.ReportMetric(float64(growth)/(1<<20), "peak-MiB")
			}
			slices.Sort(ratios)
			b.ReportMetric(ratios[len(ratios)/2], "peak/encoded")
		})
	}
}

// BenchmarkOpenRead: open a DB and load the large state, against gob
// decoding of the same state from a file.
func BenchmarkOpenRead(b *testing.B) {
	m := bigState(b)
	dir := b.TempDir()
	db, err := Open(filepath.Join(dir, "db"))
	if err != nil {
		b.Fatal(err)
	}
	NewState(db, "big", m)
	if _, err := db.Save(); err != nil {
		b.Fatal(err)
	}
	db.Close()
	if err := gobSave(dir, m); err != nil {
		b.Fatal(err)
	}
	b.Run("instadump", func(b *testing.B) {
		b.SetBytes(int64(bigSize))
		for b.Loop() {
			db, err := Open(filepath.Join(dir, "db"))
			if err != nil {
				b.Fatal(err)
			}
			s, err := NewState(db, "big", map[string]benchRecord(nil))
			if err != nil || len(s.Get()) != len(m) {
				b.Fatal(err)
			}
			db.Close()
		}
	})
	b.Run("gob", func(b *testing.B) {
		b.SetBytes(int64(bigSize))
		for b.Loop() {
			f, err := os.Open(filepath.Join(dir, "state.gob"))
			if err != nil {
				b.Fatal(err)
			}
			var got map[string]benchRecord
			if err := gob.NewDecoder(bufio.NewReader(f)).Decode(&got); err != nil || len(got) != len(m) {
				b.Fatal(err)
			}
			f.Close()
		}
	})
}

// BenchmarkMap: a Map of benchMB()*5000 records (1M by default): a full
// save, a save of 1% of its keys, and a load, against a plain gob of the
// same map in the same run.
func BenchmarkMap(b *testing.B) {
	n := benchMB() * 5000
	recs := makeRecords(n, 7)
	dir := b.TempDir()
	db, err := Open(filepath.Join(dir, "db"))
	if err != nil {
		b.Fatal(err)
	}
	m, _ := NewMap[string, benchRecord](db, "m")
	plain := make(map[string]benchRecord, n)
	for i, r := range recs {
		k := fmt.Sprintf("key-%08d", i)
		m.Set(k, r)
		plain[k] = r
	}
	b.Run("full-save", func(b *testing.B) {
		for b.Loop() {
			m.needBase = true
			db.markDirty(m)
			if _, err := db.Save(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("save-1pct", func(b *testing.B) {
		rng := rand.New(rand.NewSource(1))
		for b.Loop() {
			for range n / 100 {
				k := fmt.Sprintf("key-%08d", rng.Intn(n))
				r, _ := m.Get(k)
				r.Count++
				m.Set(k, r)
			}
			if _, err := db.Save(); err != nil {
				b.Fatal(err)
			}
		}
	})
	db.Close()
	b.Run("load", func(b *testing.B) {
		for b.Loop() {
			db, err := Open(filepath.Join(dir, "db"))
			if err != nil {
				b.Fatal(err)
			}
			if m, err := NewMap[string, benchRecord](db, "m"); err != nil || m.Len() != n {
				b.Fatal(err)
			}
			db.Close()
		}
	})
	if err := gobSave(dir, plain); err != nil {
		b.Fatal(err)
	}
	b.Run("gob-save", func(b *testing.B) {
		for b.Loop() {
			if err := gobSave(dir, plain); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gob-load", func(b *testing.B) {
		for b.Loop() {
			f, err := os.Open(filepath.Join(dir, "state.gob"))
			if err != nil {
				b.Fatal(err)
			}
			var got map[string]benchRecord
			if err := gob.NewDecoder(bufio.NewReader(f)).Decode(&got); err != nil || len(got) != n {
				b.Fatal(err)
			}
			f.Close()
		}
	})
}
