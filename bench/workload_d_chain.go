package main

import (
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"time"

	"github.com/instadump/instadump"
	"github.com/instadump/instadump/inspect"
	"github.com/vmihailenco/msgpack/v5"
)

// Workload D's bounds on a Map's chain of deltas: the
// disk a Map takes after many saves changing 1% of its keys, with the
// default retention, against the live map's encoded size; and how much
// longer the Map takes to open and load when its chain is at its longest
// than right after a full save, when it is its base alone.
//
// The bench sees the chain only through the public API and package
// inspect, which says how many deltas follow the base. It does not know
// the rule that ends a chain (a Save rewrites the base once the chain is
// too long); it finds the longest chain by saving until a Save rewrites
// the base, and then builds a chain of that length again.

// Metric names, read again by targets.
const (
	dLoadBase  = "open + load, right after a full save (the base alone)"
	dLoadChain = "open + load, the chain at its longest"
	dChainLen  = "the longest chain: deltas of 1% before a Save rewrote the base"
	dDiskAfter = "disk after %d saves changing 1%% (limit: msgpack of the live map)"
	dDiskPeak  = "most disk during those saves (limit: msgpack of the live map)"
)

// changeOnePercent changes 1% of the keys (picked by seed) in m and in
// im. It changes Score alone: msgpack writes a float64 in 9 bytes
// whatever its value, so the same seed makes a delta of the same bytes
// and the same base every time, and a chain ends at the same length.
func changeOnePercent(im *instadump.Map[string, Record], m map[string]Record, keys []string, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	for range max(1, len(keys)/100) {
		k := keys[rng.Intn(len(keys))]
		r := m[k]
		r.Score++
		m[k] = r
		im.Set(k, r)
	}
}

// chainLen returns the number of deltas after the base of the Map "big"
// in the current snapshot of dir, read through package inspect (which
// works while the DB is open).
func chainLen(dir string) (int, error) {
	d, err := inspect.Open(dir)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	states, err := d.States(0)
	if err != nil {
		return 0, err
	}
	for _, s := range states {
		if s.Name == "big" {
			return s.Deltas, nil
		}
	}
	return 0, fmt.Errorf("%s: no state big", dir)
}

// newFullMap opens dir, registers the Map "big" holding m and saves it:
// a full save, its base alone on disk.
func newFullMap(dir string, m map[string]Record) (*instadump.DB, *instadump.Map[string, Record], error) {
	db, err := instadump.Open(dir)
	if err != nil {
		return nil, nil, err
	}
	im, err := instadump.NewMap[string, Record](db, "big")
	if err == nil {
		for k, v := range m {
			im.Set(k, v)
		}
		_, err = db.Save()
	}
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, im, nil
}

// timedLoad opens dir and loads the Map "big" from it, timed, after a GC;
// it returns them open.
func timedLoad(dir string) (*instadump.DB, *instadump.Map[string, Record], time.Duration, error) {
	runtime.GC()
	t := time.Now()
	db, err := instadump.Open(dir)
	if err != nil {
		return nil, nil, 0, err
	}
	im, err := instadump.NewMap[string, Record](db, "big")
	d := time.Since(t)
	if err != nil {
		db.Close()
		return nil, nil, 0, err
	}
	return db, im, d, nil
}

// measureChain runs one round of the chain's load: it saves 1% changes
// until a Save rewrites the base (the chain before it was the longest),
// times the load right after that rewrite (the base alone), then makes the
// same deltas again, checks the chain is as long as before, and times the
// load of that longest chain. Both loads are on the same map, in the same
// round.
func measureChain(rep *report, dir string, m map[string]Record, keys []string, round int) error {
	defer os.RemoveAll(dir)
	db, im, err := newFullMap(dir, m)
	if err != nil {
		return err
	}
	seed := func(i int) int64 { return int64(round)<<32 | int64(i) }
	longest := -1
	for i := 1; longest < 0; i++ {
		if i > 10_000 {
			db.Close()
			return fmt.Errorf("no Save rewrote the base in %d saves changing 1%%", i-1)
		}
		changeOnePercent(im, m, keys, seed(i))
		if _, err := db.Save(); err != nil {
			db.Close()
			return err
		}
		n, err := chainLen(dir)
		if err != nil {
			db.Close()
			return err
		}
		if n == 0 { // this Save rewrote the base
			longest = i - 1
		}
	}
	if err := db.Close(); err != nil {
		return err
	}
	if longest == 0 {
		return fmt.Errorf("every Save changing 1%% rewrote the base: no chain to measure")
	}
	rep.add(dChainLen, "count", dMap, float64(longest))

	db, im, d, err := timedLoad(dir)
	if err != nil {
		return err
	}
	rep.add(dLoadBase, "s", dMap, d.Seconds())
	for i := 1; i <= longest; i++ {
		changeOnePercent(im, m, keys, seed(i)) // the same deltas as above
		if _, err := db.Save(); err != nil {
			db.Close()
			return err
		}
	}
	n, err := chainLen(dir)
	if err == nil && n != longest {
		err = fmt.Errorf("the same saves made a chain of %d deltas, not %d", n, longest)
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	db, _, d, err = timedLoad(dir)
	if err != nil {
		return err
	}
	rep.add(dLoadChain, "s", dMap, d.Seconds())
	return db.Close()
}

// diskAfterSavesD saves the Map *flagSaves times, changing 1% of its keys
// each time, with the default retention, and records the disk its
// directory takes after them and at most after any of them, against the
// encoded size of the live map.
func diskAfterSavesD(rep *report, dir string, m map[string]Record, keys []string) error {
	defer os.RemoveAll(dir)
	db, im, err := newFullMap(dir, m)
	if err != nil {
		return err
	}
	peak := du(dir)
	for i := 1; i <= *flagSaves; i++ {
		changeOnePercent(im, m, keys, int64(1)<<40|int64(i))
		if _, err := db.Save(); err != nil {
			db.Close()
			return err
		}
		peak = max(peak, du(dir))
	}
	if err := db.Close(); err != nil {
		return err
	}
	live, err := msgpack.Marshal(m)
	if err != nil {
		return err
	}
	after := fmt.Sprintf(dDiskAfter, *flagSaves)
	rep.add(after, "MB", dMap, float64(du(dir))/1e6)
	rep.add(after, "MB", "limit", float64(len(live))/1e6)
	rep.add(dDiskPeak, "MB", dMap, float64(peak)/1e6)
	rep.add(dDiskPeak, "MB", "limit", float64(len(live))/1e6)
	return nil
}
