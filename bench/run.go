package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/instadump/instadump"
	"github.com/klauspost/compress/zstd"
	"github.com/vmihailenco/msgpack/v5"
)

// A metric's samples, by system.
type metric struct {
	name  string
	unit  string // "s", "ms", "MB", "µs", "x"
	by    map[string][]float64
	order []string
}

type report struct {
	w       *workload
	columns []string // the systems, in order; the usual ones when nil
	metrics []*metric
	index   map[string]*metric
}

func (r *report) add(name, unit, system string, v float64) {
	if r.index == nil {
		r.index = map[string]*metric{}
	}
	m := r.index[name]
	if m == nil {
		m = &metric{name: name, unit: unit, by: map[string][]float64{}}
		r.index[name] = m
		r.metrics = append(r.metrics, m)
	}
	if _, ok := m.by[system]; !ok {
		m.order = append(m.order, system)
	}
	m.by[system] = append(m.by[system], v)
}

func (r *report) median(name, system string) float64 {
	m := r.index[name]
	if m == nil || len(m.by[system]) == 0 {
		return 0
	}
	v := slices.Clone(m.by[system])
	sort.Float64s(v)
	return v[len(v)/2]
}

func newSystems() []system { return []system{&idump{}, &naive{}, &boltSys{}, &pebbleSys{}} }

func runWorkload(w *workload, dir string) (*report, error) {
	rep := &report{w: w}
	for round := 0; round < *flagRuns; round++ {
		fmt.Fprintf(os.Stderr, "  round %d/%d\n", round+1, *flagRuns)
		if err := limits(rep, w); err != nil {
			return nil, err
		}
		for _, s := range newSystems() {
			if err := measure(rep, w, s, filepath.Join(dir, fmt.Sprint(round), strings.ReplaceAll(s.name(), " ", "-")), round); err != nil {
				return nil, fmt.Errorf("%s: %w", s.name(), err)
			}
		}
		os.RemoveAll(filepath.Join(dir, fmt.Sprint(round)))
	}
	if w.name == "B" {
		for _, s := range newSystems() {
			if err := diskAfterSaves(rep, w, s, filepath.Join(dir, "disk", strings.ReplaceAll(s.name(), " ", "-"))); err != nil {
				return nil, fmt.Errorf("%s: %w", s.name(), err)
			}
		}
	}
	return rep, nil
}

// measure runs one round of one system.
func measure(rep *report, w *workload, s system, dir string, round int) error {
	if err := s.open(dir, w); err != nil {
		return err
	}
	runtime.GC()
	peak := startHeapPeak()
	var waits *waiters
	if id, ok := s.(*idump); ok {
		waits = startWaiters(id, w)
	}
	t := time.Now()
	err := s.save(w, nil)
	d := time.Since(t)
	if waits != nil {
		waits.stop(rep, s.name())
	}
	rep.add("full save", "s", s.name(), d.Seconds())
	rep.add("peak heap growth during full save", "MB", s.name(), float64(peak.stop())/1e6)
	if err != nil {
		return err
	}
	if w.name == "B" {
		for _, pct := range []int{1, 10} {
			changed := pick(len(w.values), pct, round)
			for _, i := range changed {
				w.values[i] = w.fresh(i, round*1000+pct)
			}
			t := time.Now()
			if err := s.save(w, changed); err != nil {
				return err
			}
			rep.add(fmt.Sprintf("save changing %d%%", pct), "s", s.name(), time.Since(t).Seconds())
		}
	}
	if err := s.close(); err != nil {
		return err
	}
	runtime.GC()
	t = time.Now()
	if err := s.readAll(dir, w); err != nil {
		return err
	}
	rep.add("open + read back", "s", s.name(), time.Since(t).Seconds())
	return os.RemoveAll(dir)
}

// pick returns pct% of n indexes (at least one), different each round.
func pick(n, pct, round int) []int {
	k := max(1, n*pct/100)
	out := make([]int, k)
	for j := range out {
		out[j] = (round*7919 + j*n/k) % n
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func diskAfterSaves(rep *report, w *workload, s system, dir string) error {
	if err := s.open(dir, w); err != nil {
		return err
	}
	for k := 0; k < *flagSaves; k++ {
		changed := pick(len(w.values), 10, k+100)
		for _, i := range changed {
			w.values[i] = w.fresh(i, 5000+k)
		}
		if err := s.save(w, changed); err != nil {
			return err
		}
	}
	if err := s.close(); err != nil {
		return err
	}
	rep.add(fmt.Sprintf("disk after %d saves changing 10%% (limit: msgpack of the live states)", *flagSaves), "MB", s.name(), float64(du(dir))/1e6)
	live, _ := encodedSize(w)
	rep.add(fmt.Sprintf("disk after %d saves changing 10%% (limit: msgpack of the live states)", *flagSaves), "MB", "limit", float64(live)/1e6)
	return os.RemoveAll(dir)
}

func du(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// --- writer waits during a save (instadump) ---

type waiters struct {
	done        atomic.Bool
	wg          sync.WaitGroup
	other, same []time.Duration
}

func startWaiters(s *idump, w *workload) *waiters {
	side, err := instadump.NewState(s.db, fmt.Sprint("side-", time.Now().UnixNano()), 0)
	if err != nil {
		panic(err)
	}
	ws := &waiters{}
	loop := func(out *[]time.Duration, f func(int)) {
		ws.wg.Go(func() {
			for i := 0; !ws.done.Load(); i++ {
				time.Sleep(50 * time.Microsecond)
				t := time.Now()
				f(i)
				*out = append(*out, time.Since(t))
			}
		})
	}
	loop(&ws.other, func(i int) { side.Set(i) })
	loop(&ws.same, func(int) { s.sets[0](w.values[0]) })
	return ws
}

func (ws *waiters) stop(rep *report, system string) {
	ws.done.Store(true)
	ws.wg.Wait()
	for _, x := range []struct {
		name string
		d    []time.Duration
	}{{"Set on a state the save is not writing", ws.other}, {"Set on the state the save is writing", ws.same}} {
		if len(x.d) == 0 {
			continue
		}
		slices.Sort(x.d)
		rep.add(x.name+": max", "µs", system, float64(x.d[len(x.d)-1].Microseconds()))
		rep.add(x.name+": p99", "µs", system, float64(x.d[len(x.d)*99/100].Microseconds()))
	}
}

// --- peak heap ---

type heapPeak struct {
	base int64
	peak atomic.Int64
	done chan struct{}
	wg   sync.WaitGroup
}

func heapNow() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

func startHeapPeak() *heapPeak {
	h := &heapPeak{base: heapNow(), done: make(chan struct{})}
	h.wg.Go(func() {
		for {
			if v := heapNow(); v > h.peak.Load() {
				h.peak.Store(v)
			}
			select {
			case <-h.done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	return h
}

func (h *heapPeak) stop() int64 {
	close(h.done)
	h.wg.Wait()
	return max(0, h.peak.Load()-h.base)
}

// --- limits: each stage alone ---

func encodedSize(w *workload) (int64, [][]byte) {
	var total int64
	var out [][]byte
	for _, v := range w.values {
		b, err := encodeMsgpack(v)
		if err != nil {
			panic(err)
		}
		total += int64(len(b))
		out = append(out, b)
	}
	return total, out
}

var (
	zEnc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(false), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)))
	zDec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)))
)

// parallel runs f(0..n-1) on GOMAXPROCS goroutines.
func parallel(n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		})
	}
	wg.Wait()
}

func limits(rep *report, w *workload) error {
	const sys = "limit"
	runtime.GC()
	t := time.Now()
	enc := msgpack.NewEncoder(io.Discard)
	bw := bufio.NewWriterSize(io.Discard, 64<<10)
	enc.Reset(bw)
	for _, v := range w.values {
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	rep.add("msgpack encoding alone", "s", sys, time.Since(t).Seconds())

	size, encoded := encodedSize(w)
	rep.add("msgpack size", "MB", sys, float64(size)/1e6)
	var chunks [][]byte
	for _, b := range encoded {
		for lo := 0; lo < len(b); lo += 4 << 20 {
			chunks = append(chunks, b[lo:min(lo+4<<20, len(b))])
		}
	}
	comp := make([][]byte, len(chunks))
	t = time.Now()
	parallel(len(chunks), func(i int) { comp[i] = zEnc.EncodeAll(chunks[i], nil) })
	rep.add("zstd compression alone (all cores)", "s", sys, time.Since(t).Seconds())
	var compSize int64
	for _, c := range comp {
		compSize += int64(len(c))
	}

	f, err := os.CreateTemp("", "bench-write-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	t = time.Now()
	for _, c := range comp {
		if _, err := f.Write(c); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	rep.add("write + fsync alone of the compressed bytes", "s", sys, time.Since(t).Seconds())
	f.Close()

	t = time.Now()
	parallel(len(comp), func(i int) {
		out := make([]byte, 0, len(chunks[i]))
		if _, err := zDec.DecodeAll(comp[i], out); err != nil {
			panic(err)
		}
	})
	rep.add("zstd decompression alone (all cores)", "s", sys, time.Since(t).Seconds())
	runtime.GC()
	t = time.Now()
	for i, b := range encoded {
		if err := msgpack.Unmarshal(b, w.typed(i)); err != nil {
			return err
		}
	}
	rep.add("msgpack decoding alone", "s", sys, time.Since(t).Seconds())
	return nil
}
