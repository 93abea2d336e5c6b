package main

import (
	"bufio"
	"encoding/gob"
	"fmt"
	"maps"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/instadump/instadump"
	"github.com/vmihailenco/msgpack/v5"
	bolt "go.etcd.io/bbolt"
)

// Workload D: one big map changed a few keys at a time. instadump's Map
// against the same data as one State of a map (each change a copy of the
// map, each save a full one), a naive gob of the map, and bbolt and
// Pebble with one key per entry.

// dSystem keeps workload D's map on disk.
type dSystem interface {
	name() string
	// open creates the store in dir holding m in memory, as the program
	// would before its first save (not timed).
	open(dir string, m map[string]Record) error
	// saveAll saves it whole (timed).
	saveAll(m map[string]Record) error
	// change sets keys to their values in m and saves them, durably.
	change(m map[string]Record, keys []string) error
	close() error
	// load opens dir and reads every entry back into Go values, which
	// it returns.
	load(dir string) (any, error)
}

const (
	dMap   = "instadump"
	dState = "instadump State"
)

var dColumns = []string{dMap, dState, "naive gob", "bbolt", "pebble"}

func dSystems() []dSystem {
	return []dSystem{&dMapSys{}, &dStateSys{}, &dGob{}, &dBolt{}, &dPebble{}}
}

func workloadD(n int) (*workload, map[string]Record, []string) {
	rng := rand.New(rand.NewSource(4))
	m := make(map[string]Record, n)
	keys := make([]string, n)
	for i := range n {
		keys[i] = fmt.Sprintf("key-%08d", i)
		m[keys[i]] = makeRecord(rng, i)
	}
	w := &workload{name: "D", about: fmt.Sprintf("a Map[string, Record] of %d entries, changed a few keys at a time", n)}
	return w, m, keys
}

// runD runs workload D's rounds.
func runD(n int, dir string) (*report, error) {
	w, m, keys := workloadD(n)
	rep := &report{w: w, columns: dColumns}
	for round := 0; round < *flagRuns; round++ {
		fmt.Fprintf(os.Stderr, "  round %d/%d\n", round+1, *flagRuns)
		for _, s := range dSystems() {
			sdir := filepath.Join(dir, fmt.Sprint(round), strings.ReplaceAll(s.name(), " ", "-"))
			if err := measureD(rep, s, sdir, m, keys, round); err != nil {
				return nil, fmt.Errorf("%s: %w", s.name(), err)
			}
		}
		if err := measureSetWaits(rep, filepath.Join(dir, fmt.Sprint(round), "waits"), m, keys, round); err != nil {
			return nil, fmt.Errorf("Map.Set during saves: %w", err)
		}
		if err := measureChain(rep, filepath.Join(dir, fmt.Sprint(round), "chain"), m, keys, round); err != nil {
			return nil, fmt.Errorf("the longest chain: %w", err)
		}
		os.RemoveAll(filepath.Join(dir, fmt.Sprint(round)))
	}
	if err := diskAfterSavesD(rep, filepath.Join(dir, "disk"), m, keys); err != nil {
		return nil, fmt.Errorf("disk after saves: %w", err)
	}
	return rep, nil
}

func measureD(rep *report, s dSystem, dir string, m map[string]Record, keys []string, round int) error {
	if err := s.open(dir, m); err != nil {
		return err
	}
	t := time.Now()
	if err := s.saveAll(m); err != nil {
		return err
	}
	rep.add("full save", "s", s.name(), time.Since(t).Seconds())
	rng := rand.New(rand.NewSource(int64(round)))
	for _, per := range []int{1, 10, 100} { // per mille
		changed := make([]string, max(1, len(keys)*per/1000))
		for i := range changed {
			k := keys[rng.Intn(len(keys))]
			changed[i] = k
			r := m[k]
			r.Count++
			m[k] = r
		}
		peak := startHeapPeak()
		t := time.Now()
		if err := s.change(m, changed); err != nil {
			return err
		}
		d := time.Since(t)
		growth := peak.stop()
		rep.add(fmt.Sprintf("save changing %s of keys", perMille(per)), "s", s.name(), d.Seconds())
		if _, ok := s.(*dMapSys); ok && per == 10 {
			rep.add("peak heap growth during a save changing 1%", "MB", s.name(), float64(growth)/1e6)
			rep.add("peak heap growth during a save changing 1%", "MB", "limit", float64(encodedEntries(m, changed))/1e6)
		}
	}
	if err := s.close(); err != nil {
		return err
	}
	var err error
	size := heapOf(func() any {
		t = time.Now()
		var held any
		held, err = s.load(dir)
		rep.add("open + load", "s", s.name(), time.Since(t).Seconds())
		return held
	})
	switch s.(type) {
	case *dMapSys:
		rep.add("resident size loaded", "MB", s.name(), float64(size)/1e6)
	case *dGob: // a plain Go map decoded from its file: the limit
		rep.add("resident size loaded", "MB", "limit", float64(size)/1e6)
	}
	if err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

func perMille(p int) string {
	if p%10 == 0 {
		return fmt.Sprintf("%d%%", p/10)
	}
	return fmt.Sprintf("%.1f%%", float64(p)/10)
}

// heapOf returns the live heap that what f returns holds.
func heapOf(f func() any) int64 {
	runtime.GC()
	before := heapNow()
	v := f()
	runtime.GC()
	after := heapNow()
	runtime.KeepAlive(v)
	return after - before
}

func encodedEntries(m map[string]Record, keys []string) int64 {
	var n int64
	for _, k := range slices.Compact(slices.Sorted(slices.Values(keys))) {
		b, _ := msgpack.Marshal(m[k])
		n += int64(len(b) + len(k) + 1)
	}
	return n
}

// --- Set during a Map's saves ---

// measureSetWaits times every Map.Set a writer makes, one after another,
// during a full save of the Map and during a save changing 1% of its
// keys. The saves are not the timed ones: the writer takes a core.
func measureSetWaits(rep *report, dir string, m map[string]Record, keys []string, round int) error {
	s := &dMapSys{}
	if err := s.open(dir, m); err != nil {
		return err
	}
	defer s.close()
	waits := startMapWaiters(s)
	if err := s.saveAll(m); err != nil {
		return err
	}
	waits.stop(rep, "during a full save")
	rng := rand.New(rand.NewSource(int64(round)))
	changed := make([]string, max(1, len(keys)/100))
	for i := range changed {
		changed[i] = keys[rng.Intn(len(keys))]
	}
	im := s.m.Load()
	for _, k := range changed {
		r := m[k]
		r.Count++
		im.Set(k, r)
	}
	waits = startMapWaiters(s)
	if _, err := s.db.Save(); err != nil {
		return err
	}
	waits.stop(rep, "during a save changing 1%")
	return nil
}

type mapWaiters struct {
	done atomic.Bool
	wg   sync.WaitGroup
	d    []time.Duration
}

func startMapWaiters(s *dMapSys) *mapWaiters {
	ws := &mapWaiters{}
	ws.wg.Go(func() {
		for i := 0; !ws.done.Load(); i++ {
			runtime.Gosched() // one Set after another, letting the save run
			m := s.m.Load()
			if m == nil {
				continue
			}
			k := fmt.Sprintf("waiter-%d", i%10)
			t := time.Now()
			m.Set(k, Record{Count: int64(i)})
			ws.d = append(ws.d, time.Since(t))
		}
	})
	return ws
}

func (ws *mapWaiters) stop(rep *report, when string) {
	ws.done.Store(true)
	ws.wg.Wait()
	if len(ws.d) == 0 {
		return
	}
	slices.Sort(ws.d)
	rep.add("Map.Set "+when+": max", "µs", dMap, float64(ws.d[len(ws.d)-1].Microseconds()))
	rep.add("Map.Set "+when+": p99", "µs", dMap, float64(ws.d[len(ws.d)*99/100].Nanoseconds())/1000)
}

// --- instadump: a Map ---

type dMapSys struct {
	db *instadump.DB
	m  atomic.Pointer[instadump.Map[string, Record]] // read by the waiters
}

func (*dMapSys) name() string { return dMap }

func (s *dMapSys) open(dir string, m map[string]Record) error {
	db, err := instadump.Open(dir)
	if err != nil {
		return err
	}
	im, err := instadump.NewMap[string, Record](db, "big")
	if err != nil {
		return err
	}
	for k, v := range m {
		im.Set(k, v)
	}
	s.db = db
	s.m.Store(im)
	return nil
}

func (s *dMapSys) saveAll(map[string]Record) error {
	_, err := s.db.Save()
	return err
}

func (s *dMapSys) change(m map[string]Record, keys []string) error {
	im := s.m.Load()
	for _, k := range keys {
		im.Set(k, m[k])
	}
	_, err := s.db.Save()
	return err
}

func (s *dMapSys) close() error { s.m.Store(nil); return s.db.Close() }

func (s *dMapSys) load(dir string) (any, error) {
	db, err := instadump.Open(dir)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return instadump.NewMap[string, Record](db, "big")
}

// --- instadump: the same map as one State: a change copies the map ---

type dStateSys struct {
	db *instadump.DB
	s  *instadump.State[map[string]Record]
}

func (*dStateSys) name() string { return dState }

func (s *dStateSys) open(dir string, m map[string]Record) error {
	db, err := instadump.Open(dir)
	if err != nil {
		return err
	}
	st, err := instadump.NewState(db, "big", maps.Clone(m))
	if err != nil {
		return err
	}
	s.db, s.s = db, st
	return nil
}

func (s *dStateSys) saveAll(map[string]Record) error {
	_, err := s.db.Save()
	return err
}

func (s *dStateSys) change(m map[string]Record, keys []string) error {
	next := maps.Clone(s.s.Get()) // values are never changed in place
	for _, k := range keys {
		next[k] = m[k]
	}
	s.s.Set(next)
	_, err := s.db.Save()
	return err
}

func (s *dStateSys) close() error { return s.db.Close() }

func (s *dStateSys) load(dir string) (any, error) {
	db, err := instadump.Open(dir)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	st, err := instadump.NewState(db, "big", map[string]Record(nil))
	if err != nil {
		return nil, err
	}
	return st.Get(), nil
}

// --- naive gob of the whole map ---

type dGob struct {
	dir string
	m   map[string]Record
}

func (*dGob) name() string { return "naive gob" }

func (s *dGob) open(dir string, m map[string]Record) error {
	s.dir = dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	s.m = m
	return nil
}

func (s *dGob) saveAll(map[string]Record) error { return s.save() }

func (s *dGob) save() error {
	tmp := filepath.Join(s.dir, "map.gob.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = gob.NewEncoder(bw).Encode(s.m)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, "map.gob"))
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	return err
}

func (s *dGob) change(map[string]Record, []string) error { return s.save() }
func (*dGob) close() error                               { return nil }

func (s *dGob) load(dir string) (any, error) {
	f, err := os.Open(filepath.Join(dir, "map.gob"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var m map[string]Record
	err = gob.NewDecoder(bufio.NewReaderSize(f, 1<<20)).Decode(&m)
	return m, err
}

// --- bbolt: one key per entry, sorted ---

type dBolt struct{ db *bolt.DB }

func (*dBolt) name() string { return "bbolt" }

func (s *dBolt) open(dir string, m map[string]Record) error {
	os.MkdirAll(dir, 0o755)
	db, err := bolt.Open(filepath.Join(dir, "bolt.db"), 0o644, nil)
	if err != nil {
		return err
	}
	s.db = db
	return nil
}

func (s *dBolt) saveAll(m map[string]Record) error { return s.put(m, slices.Sorted(maps.Keys(m))) }

func (s *dBolt) put(m map[string]Record, keys []string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		for _, k := range keys {
			v, err := msgpack.Marshal(m[k])
			if err != nil {
				return err
			}
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *dBolt) change(m map[string]Record, keys []string) error {
	return s.put(m, slices.Sorted(slices.Values(keys)))
}

func (s *dBolt) close() error { return s.db.Close() }

func (s *dBolt) load(dir string) (any, error) {
	db, err := bolt.Open(filepath.Join(dir, "bolt.db"), 0o644, nil)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	out := map[string]Record{}
	err = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			var r Record
			if err := msgpack.Unmarshal(v, &r); err != nil {
				return err
			}
			out[string(k)] = r
			return nil
		})
	})
	return out, err
}

// --- pebble: one key per entry, a batch committed with Sync ---

type dPebble struct{ db *pebble.DB }

func (*dPebble) name() string { return "pebble" }

func (s *dPebble) open(dir string, m map[string]Record) error {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quiet{}})
	if err != nil {
		return err
	}
	s.db = db
	return nil
}

func (s *dPebble) saveAll(m map[string]Record) error {
	return s.change(m, slices.Collect(maps.Keys(m)))
}

func (s *dPebble) change(m map[string]Record, keys []string) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, k := range keys {
		v, err := msgpack.Marshal(m[k])
		if err != nil {
			return err
		}
		if err := b.Set([]byte(k), v, nil); err != nil {
			return err
		}
	}
	return b.Commit(pebble.Sync)
}

func (s *dPebble) close() error { return s.db.Close() }

func (s *dPebble) load(dir string) (any, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quiet{}})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[string]Record{}
	for it.First(); it.Valid(); it.Next() {
		var r Record
		if err := msgpack.Unmarshal(it.Value(), &r); err != nil {
			return nil, err
		}
		out[string(it.Key())] = r
	}
	return out, it.Error()
}
