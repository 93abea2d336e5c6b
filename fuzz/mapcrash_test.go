package fuzz

import (
	"fmt"
	"math/rand"
	"sync/atomic"
	"testing"

	"github.com/instadump/instadump"
	"github.com/instadump/instadump/internal/vfs"
)

// Crash recovery of Maps, through the public API over the crashable
// MemFS: every mutating filesystem operation of a Map workload is a
// crash point; at each, every crash state must recover exactly the last
// acknowledged snapshot or the one in flight, key by key, with every
// retained snapshot as acknowledged, and take a further save.

// mapFigures count the Map workloads' share of the figures (which count
// them too), printed by TestMain.
var mapFigures struct {
	crashFigures
	killKeys atomic.Int64
}

// mapWorkload is a sequence of steps on a mapEnv; it stops at the first
// error.
type mapWorkload struct {
	name string
	spec mapSpec
	run  func(w *mapEnv) error
	// rewrites names a Map whose base the workload must see rewritten
	// by a save because its chain of deltas grew too long; moves, one
	// whose base and deltas compactions of the segments must move into
	// their fresh segment, once with a new delta and once without.
	rewrites, moves string
}

func key(i int) string { return fmt.Sprintf("k%03d", i) }

var mapWorkloads = []*mapWorkload{
	{name: "map grows by sets", spec: mapSpec{retain: 1, maps: []string{"m"}}, run: func(w *mapEnv) error {
		if err := w.open(); err != nil {
			return err
		}
		for i := 1; i <= 4; i++ {
			for j := 0; j < 12; j++ {
				k := key(12*i + j)
				w.set("m", k, val(k, i, 10+37*j%200))
			}
			w.set("m", key(i), val("big", i, 3000)) // one value over blocks
			if err := w.save(); err != nil {
				return err
			}
		}
		return nil
	}},
	{name: "map sets and deletes", spec: mapSpec{retain: 2, maps: []string{"m", "n"}}, run: func(w *mapEnv) error {
		if err := w.open(); err != nil {
			return err
		}
		for j := 0; j < 30; j++ {
			w.set("m", key(j), val(key(j), 1, 40))
		}
		for j := 0; j < 10; j++ {
			w.set("n", key(j), val("n", j, 20))
		}
		if err := w.save(); err != nil {
			return err
		}
		for j := 0; j < 5; j++ {
			w.del("m", key(j))
			w.set("m", fmt.Sprint("x", j), val("x", j, 30))
		}
		w.set("m", "y0", "set, then deleted in the same save: never saved")
		w.del("m", "y0")
		w.del("m", key(10)) // deleted, then set again in the same save
		w.set("m", key(10), val(key(10), 2, 50))
		w.set("m", key(11), "first")
		w.set("m", key(11), val(key(11), 2, 60)) // set twice
		if err := w.save(); err != nil {
			return err
		}
		for j := 0; j < 10; j++ {
			w.del("n", key(j)) // the whole map
		}
		w.set("m", key(0), val(key(0), 3, 70)) // a key deleted by an earlier save
		w.del("m", "x1")
		w.set("m", "x1", "back")
		w.del("m", "x1") // saved, then set and deleted again
		if err := w.save(); err != nil {
			return err
		}
		w.del("m", "absent")
		w.set("n", key(3), val("n", 4, 20)) // an emptied map grows again
		return w.save()
	}},
	{name: "map chain compaction", spec: mapSpec{retain: 2, maps: []string{"m"}}, rewrites: "m", run: func(w *mapEnv) error {
		if err := w.open(); err != nil {
			return err
		}
		for j := 0; j < 40; j++ {
			w.set("m", key(j), val(key(j), 1, 60))
		}
		if err := w.save(); err != nil {
			return err
		}
		// Small saves until the deltas pass an eighth of the base: the
		// save after that rewrites the base.
		for i := 2; i <= 9; i++ {
			w.set("m", key(3*i), val(key(3*i), i, 60))
			w.set("m", key(40+i), val(key(40+i), i, 60))
			w.del("m", key(3*i+1))
			if err := w.save(); err != nil {
				return err
			}
		}
		return nil
	}},
	{name: "map moved by compaction", spec: mapSpec{retain: 1, level: instadump.LevelNone, maps: []string{"m", "churn"}}, moves: "m", run: func(w *mapEnv) error {
		if err := w.open(); err != nil {
			return err
		}
		// m's base, and then its deltas, share segments with the values
		// of churn, which every save replaces: once most of their bytes
		// are dead, a save rewrites the live values, m's chain with them
		// (saves 4 and 6), the first time with a delta of m.
		for j := 0; j < 10; j++ {
			w.set("m", key(j), val(key(j), 1, 20))
		}
		for i := 1; i <= 6; i++ {
			for j := 0; j < 4; j++ {
				w.set("churn", key(j), val(key(j), i, 3000))
			}
			if i == 2 || i == 4 {
				w.set("m", key(10+i), val(key(i), i, 20))
			}
			if err := w.save(); err != nil {
				return err
			}
		}
		return nil
	}},
	{name: "map reopens", spec: mapSpec{retain: 3, maps: []string{"m"}, ints: map[string]int{"n": 0}}, run: func(w *mapEnv) error {
		if err := w.open(); err != nil {
			return err
		}
		for j := 0; j < 20; j++ {
			w.set("m", key(j), val(key(j), 1, 30))
		}
		w.setInt("n", 1)
		if err := w.save(); err != nil {
			return err
		}
		w.del("m", key(1))
		w.set("m", key(2), val(key(2), 2, 30))
		w.setInt("n", 2)
		if err := w.save(); err != nil {
			return err
		}
		if err := w.open(); err != nil { // rolls the manifest over
			return err
		}
		if err := w.readOld(); err != nil {
			return err
		}
		w.set("m", key(1), val(key(1), 3, 30))
		w.del("m", key(5))
		if err := w.save(); err != nil {
			return err
		}
		if err := w.open(); err != nil {
			return err
		}
		// The oldest retained snapshot, saved again as the newest: the
		// save writes the whole map.
		snaps, err := w.db.Snapshots()
		if err != nil {
			return err
		}
		if err := w.reloadFrom(snaps[0].ID); err != nil {
			return err
		}
		if err := w.save(); err != nil {
			return err
		}
		w.set("m", key(7), val(key(7), 5, 30))
		if err := w.save(); err != nil {
			return err
		}
		if err := w.open(); err != nil {
			return err
		}
		return w.readOld()
	}},
	{name: "map and states in transfers", spec: mapSpec{retain: 3, maps: []string{"log"}, accts: "accts", ints: map[string]int{"reserve": acctTotal, "transfers": 0}}, run: func(w *mapEnv) error {
		if err := w.open(); err != nil {
			return err
		}
		rng := rand.New(rand.NewSource(1))
		accts := []string{"", "a0", "a1", "a2", "a3", "a4"}
		for i := 1; i <= 4; i++ {
			for j := 0; j < 3; j++ {
				from := accts[rng.Intn(len(accts))]
				to := accts[rng.Intn(len(accts))]
				if from == to {
					to = accts[(rng.Intn(len(accts)-1)+1+indexOf(accts, from))%len(accts)]
				}
				if err := w.transfer(from, to, rng.Intn(600), "log"); err != nil {
					return err
				}
			}
			if err := w.save(); err != nil {
				return err
			}
		}
		return nil
	}},
}

func indexOf(s []string, x string) int {
	for i, v := range s {
		if v == x {
			return i
		}
	}
	return -1
}

func (wl *mapWorkload) label() string { return wl.name }

func (wl *mapWorkload) start(fs vfs.FS) (crashRun, error) {
	w := newMapEnv(fs, &wl.spec)
	return w, wl.run(w)
}

// clean runs wl without failures and checks that it rewrote the base it
// should have, and that compactions moved the Map they should have.
func (wl *mapWorkload) clean(mem *vfs.MemFS, fs vfs.FS) error {
	w := newMapEnv(fs, &wl.spec)
	if wl.rewrites != "" || wl.moves != "" {
		w.raw, w.chains = mem, map[string][]chainLink{}
	}
	err := wl.run(w)
	w.close()
	if err != nil {
		return err
	}
	if wl.rewrites != "" {
		links, rewrote := w.chains[wl.rewrites], 0
		for i := 1; i < len(links); i++ {
			if rewroteBase(links[i-1], links[i]) {
				rewrote++
			}
		}
		if rewrote == 0 {
			return fmt.Errorf("no save rewrote the base of %s: %+v", wl.rewrites, links)
		}
	}
	if wl.moves != "" {
		links, kinds := w.chains[wl.moves], map[bool]int{}
		for i := 1; i < len(links); i++ {
			if ok, wrote := moved(links[i-1], links[i]); ok {
				kinds[wrote]++
			}
		}
		if kinds[true] == 0 || kinds[false] == 0 {
			return fmt.Errorf("compactions moved %s with a new delta %d times, as it was %d times; want both: %+v", wl.moves, kinds[true], kinds[false], links)
		}
	}
	return nil
}

func (*mapWorkload) tally(add func(f *crashFigures)) {
	add(&figures.crashFigures)
	add(&mapFigures.crashFigures)
}

func (w *mapEnv) recovers(fsys *vfs.MemFS) error { return checkMapRecovery(fsys, w.spec, w.m) }

func (w *mapEnv) isOpen() bool { return w.db != nil }

// reopens checks the model's snapshot, key by key, every retained one,
// and that saves work again.
func (w *mapEnv) reopens(fsys *vfs.MemFS) error { return w.recovers(fsys) }

func TestCrashMapPointsEnumerated(t *testing.T) { crashPoints(t, mapWorkloads) }
