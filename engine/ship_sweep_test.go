package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/replica"
	"github.com/instadump/instadump/replica/replicatest"
	"github.com/instadump/instadump/segment"
)

// A single DB, alone at its location, never fenced, whatever fails: a
// transient fault (two in a row, so that the retries of reads do not
// hide it) at each position of each kind of store operation, in each
// mode, over a dozen rounds of commits with restarts (clean, and crashes
// with the store cut off) between them; as a plain DB, a restored one
// taking the location over, and one that fell back. Every snapshot
// WaitReplicated reports restores, as it was. INSTADUMP_SHIP_SEEDS=N
// runs N seeds instead of one.
func TestShipFaultSweep(t *testing.T) {
	seeds := envInt("INSTADUMP_SHIP_SEEDS", 1)
	ops := []replicatest.Op{replicatest.OpPut, replicatest.OpCreate, replicatest.OpGet, replicatest.OpList, replicatest.OpDelete}
	modes := []replicatest.Mode{replicatest.Before, replicatest.After, replicatest.MidBody}
	for _, setup := range []string{"plain", "restore", "fallback"} {
		for _, op := range ops {
			for _, mode := range modes {
				t.Run(fmt.Sprintf("%s/%s/%d", setup, op, mode), func(t *testing.T) {
					t.Parallel() // each run waits on its shipper mostly
					for seed := range seeds {
						for n := int64(1); n <= 25; n++ {
							shipSweepRun(t, setup, fmt.Sprintf("seed %d, fault at %d", seed, n), uint64(seed), op, mode, n)
							if t.Failed() {
								return
							}
						}
					}
				})
			}
		}
	}
}

func shipSweepRun(t *testing.T, setup, name string, seed uint64, op replicatest.Op, mode replicatest.Mode, n int64) {
	rng := rand.New(rand.NewPCG(seed, uint64(n)*31+uint64(op)*7+uint64(mode)))
	mem := replicatest.NewMemStore()
	st := replicatest.NewFaultStore(mem)
	st.Inject(replicatest.Fault{Ops: op, N: n, Err: replicatest.ErrTransient, Mode: mode, CutAt: 10})
	st.Inject(replicatest.Fault{Ops: op, N: n + 1, Err: replicatest.ErrTransient, Mode: mode, CutAt: 10})
	m, want, fallback := sweepStart(t, setup, rng, mem)
	localRetain := 1 + rng.IntN(2)
	if fallback {
		localRetain = 5
	}
	storeRetain := 1 + rng.IntN(3)
	o := Options{Retain: localRetain, Replica: replOpts(st, storeRetain), Fallback: fallback}
	e := open(t, m, o)
	defer func() { e.Close() }()
	for i := range 12 {
		k := 1 + rng.IntN(2)
		var s Snapshot
		for range k {
			s = commit(t, e, fmt.Sprint("s", rng.IntN(3)), strings.Repeat(fmt.Sprint(i), 20+rng.IntN(50)))
			want[s.ID] = contents(t, e, s.ID)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := e.WaitReplicated(ctx, s.ID)
		cancel()
		if err != nil {
			l, _, _ := readLineage(m, dir)
			_, snaps, _ := storeKeys(t, mem)
			t.Errorf("%s (retain %d/%d) step %d: WaitReplicated(%d): %v\nLINEAGE %+v\nstore %v", name, localRetain, storeRetain, i, s.ID, err, l, snaps)
			return
		}
		// What was confirmed restores.
		r, _, snap := restoreTo(t, mem, RestoreOptions{})
		if snap.ID < s.ID {
			t.Errorf("%s step %d: restored %d, %d confirmed", name, i, snap.ID, s.ID)
			r.Close()
			return
		}
		if got := contents(t, r, 0); !maps.Equal(got, want[snap.ID]) {
			t.Errorf("%s step %d: restored %d as %v want %v", name, i, snap.ID, got, want[snap.ID])
			r.Close()
			return
		}
		r.Close()
		switch rng.IntN(4) {
		case 0: // clean restart
			e.Close()
			e = open(t, m, o)
		case 1: // crash: the store is cut off, the directory as synced
			st.SetDown(true)
			c := m.CrashClone(vfs.CrashOptions{})
			e.Close()
			st.SetDown(false)
			m = c
			e = open(t, m, o)
		}
	}
}

// sweepStart returns the directory a sweep's DB opens: empty ("plain"),
// restored from a DB that shipped 4 snapshots to mem ("restore"), or
// that DB's with its newest segment damaged, to fall back ("fallback");
// and the contents of the snapshots shipped.
func sweepStart(t *testing.T, setup string, rng *rand.Rand, mem replica.Store) (m *vfs.MemFS, want map[uint64]map[string]string, fallback bool) {
	m = vfs.NewMem()
	want = map[uint64]map[string]string{}
	switch setup {
	case "restore", "fallback":
		a := open(t, m, Options{Retain: 5, Replica: replOpts(mem, 5)})
		for i := range 4 {
			s := commit(t, a, fmt.Sprint("s", i%2), fmt.Sprint("pre", i))
			want[s.ID] = contents(t, a, s.ID)
			waitShipped(t, a, s.ID)
		}
		a.Close()
		if setup == "restore" {
			m = vfs.NewMem()
			if _, err := Restore(context.Background(), mem, dir, RestoreOptions{ID: uint64(1 + rng.IntN(4)), FS: m}); err != nil {
				t.Fatal(err)
			}
		} else {
			rewrite(t, m, segment.FileName(4), flipAt(segment.HeaderSize+segment.ChunkHeaderSize))
			fallback = true
		}
	}
	return m, want, fallback
}

// envInt returns the positive integer environment variable name, or def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// The same with two faults, of two kinds of operation, each at a random
// position (Create and Delete often failing after they took effect), over
// longer runs of random local and store Retain (1 and 1 included) and
// Grace, with Close while shipping, and another DB restored from the
// store taking the location over, which fences this one. After every
// round: no snapshot ReplicaSnapshots lists has a Problem, and each one
// WaitReplicated reported restores by ID with its contents while listed.
// INSTADUMP_SHIP_RUNS and INSTADUMP_SHIP_STEPS lengthen it.
func TestShipTwoFaultSweep(t *testing.T) {
	seeds := envInt("INSTADUMP_SHIP_SEEDS", 1)
	runs := envInt("INSTADUMP_SHIP_RUNS", 40)
	steps := envInt("INSTADUMP_SHIP_STEPS", 25)
	for _, setup := range []string{"plain", "restore", "fallback"} {
		t.Run(setup, func(t *testing.T) {
			t.Parallel()
			for seed := range seeds {
				for r := range runs {
					shipTwoFaultRun(t, setup, uint64(seed), uint64(r), steps)
					if t.Failed() {
						return
					}
				}
			}
		})
	}
}

var sweepOps = []replicatest.Op{replicatest.OpPut, replicatest.OpCreate, replicatest.OpGet, replicatest.OpList, replicatest.OpDelete}

func shipTwoFaultRun(t *testing.T, setup string, seed, run uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, run*977+uint64(len(setup))))
	mem := replicatest.NewMemStore()
	st := replicatest.NewFaultStore(mem)
	var faults []string
	inject := func() {
		// two faults on different ops, each twice in a row
		i := rng.IntN(len(sweepOps))
		j := (i + 1 + rng.IntN(len(sweepOps)-1)) % len(sweepOps)
		for _, op := range []replicatest.Op{sweepOps[i], sweepOps[j]} {
			mode := replicatest.Mode(rng.IntN(3))
			if op == replicatest.OpCreate || op == replicatest.OpDelete {
				if rng.IntN(2) == 0 {
					mode = replicatest.After
				}
			}
			n := int64(1 + rng.IntN(40))
			st.Inject(replicatest.Fault{Ops: op, N: n, Err: replicatest.ErrTransient, Mode: mode, CutAt: int64(rng.IntN(20))})
			st.Inject(replicatest.Fault{Ops: op, N: n + 1, Err: replicatest.ErrTransient, Mode: mode, CutAt: 10})
			faults = append(faults, fmt.Sprintf("%s#%d mode %d", op, n, mode))
		}
	}
	inject()
	m, want, fallback := sweepStart(t, setup, rng, mem)
	localRetain := 1 + rng.IntN(3)
	if fallback {
		localRetain = 5
	}
	storeRetain := 1 + rng.IntN(3)
	grace := time.Duration(0)
	if rng.IntN(2) == 0 {
		grace = time.Duration(rng.IntN(20)) * time.Millisecond
	}
	ro := replOpts(st, storeRetain)
	ro.Grace = grace
	o := Options{Retain: localRetain, Replica: ro, Fallback: fallback}
	name := fmt.Sprintf("%s seed %d run %d (retain %d/%d grace %v faults %v)", setup, seed, run, localRetain, storeRetain, grace, faults)
	var log []string
	e := open(t, m, o)
	defer func() { e.Close() }()
	confirmed := map[uint64]bool{}
	fail := func(format string, args ...any) {
		l, _, _ := readLineage(m, dir)
		_, snaps, _ := storeKeys(t, mem)
		t.Errorf("%s: %s\nLINEAGE %+v\nstore %v\nlog %v", name, fmt.Sprintf(format, args...), l, snaps, log)
	}
	for i := range steps {
		k := 1 + rng.IntN(3)
		var s Snapshot
		for range k {
			s = commit(t, e, fmt.Sprint("s", rng.IntN(3)), strings.Repeat(fmt.Sprint(i), 20+rng.IntN(50)))
			want[s.ID] = contents(t, e, s.ID)
			// a new snapshot with this ID replaces anything confirmed
			delete(confirmed, s.ID)
		}
		log = append(log, fmt.Sprintf("c%d", s.ID))
		if rng.IntN(5) == 0 {
			// Close while shipping (with its grace), then reopen
			e.Close()
			log = append(log, "close-mid")
			e = open(t, m, o)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := e.WaitReplicated(ctx, s.ID)
		cancel()
		if err != nil {
			fail("step %d: WaitReplicated(%d): %v", i, s.ID, err)
			return
		}
		confirmed[s.ID] = true
		// Check the store: no listed snapshot has a Problem; every confirmed one
		// listed restores by ID with its contents.
		rs, err := ReplicaSnapshots(context.Background(), mem)
		if err != nil {
			fail("step %d: ReplicaSnapshots: %v", i, err)
			return
		}
		listed := map[uint64]bool{}
		for _, r := range rs {
			listed[r.ID] = true
			if r.Problem != nil {
				fail("step %d: snapshot %d listed with problem %v", i, r.ID, r.Problem)
				return
			}
		}
		if !listed[s.ID] {
			// the newest confirmed must be in the store unless a newer one is
			newest := uint64(0)
			for _, r := range rs {
				newest = max(newest, r.ID)
			}
			if newest < s.ID {
				fail("step %d: confirmed %d not listed (newest %d)", i, s.ID, newest)
				return
			}
		}
		for id := range confirmed {
			if !listed[id] {
				continue
			}
			snap, got, err := tryRestore(t, mem, id)
			if err != nil {
				if stillListed(t, mem, id) {
					fail("step %d: restore of confirmed %d, still listed: %v", i, id, err)
					return
				}
				continue
			}
			if snap.ID != id || !maps.Equal(got, want[id]) {
				fail("step %d: restore of confirmed %d gave %d %v want %v", i, id, snap.ID, got, want[id])
				return
			}
		}
		// newest restore
		snap, got, err := tryRestore(t, mem, 0)
		if err != nil {
			fail("step %d: newest restore: %v", i, err)
			return
		}
		if snap.ID < s.ID || !maps.Equal(got, want[snap.ID]) {
			fail("step %d: newest restore %d %v want >= %d %v", i, snap.ID, got, s.ID, want[snap.ID])
			return
		}
		switch rng.IntN(7) {
		case 0, 1: // clean restart
			e.Close()
			log = append(log, "restart")
			e = open(t, m, o)
		case 2: // crash
			st.SetDown(true)
			c := m.CrashClone(vfs.CrashOptions{})
			e.Close()
			st.SetDown(false)
			m = c
			log = append(log, "crash")
			e = open(t, m, o)
		case 3: // second restore takes over: the old DB keeps running and must be fenced
			var ids []uint64
			for id := range confirmed {
				if listed[id] {
					ids = append(ids, id)
				}
			}
			pick := RestoreOptions{}
			if len(ids) > 0 && rng.IntN(2) == 0 {
				pick.ID = ids[rng.IntN(len(ids))]
			}
			m2 := vfs.NewMem()
			snap, err := Restore(context.Background(), mem, dir, RestoreOptions{ID: pick.ID, FS: m2})
			if err != nil && pick.ID != 0 && !stillListed(t, mem, pick.ID) {
				m2 = vfs.NewMem()
				snap, err = Restore(context.Background(), mem, dir, RestoreOptions{FS: m2})
			}
			if err != nil {
				fail("step %d: restore: %v", i, err)
				return
			}
			log = append(log, fmt.Sprintf("takeover@%d", snap.ID))
			e2 := open(t, m2, Options{Retain: localRetain, Replica: ro})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			err = e2.WaitReplicated(ctx, snap.ID)
			cancel()
			if err != nil {
				e2.Close()
				fail("step %d: restored DB WaitReplicated(%d): %v", i, snap.ID, err)
				return
			}
			// old one: a commit, which must not be confirmed
			late := commit(t, e, "s0", "old")
			ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
			err = e.WaitReplicated(ctx, late.ID)
			cancel()
			if !errors.Is(err, ErrFenced) {
				e2.Close()
				fail("step %d: old DB after takeover: WaitReplicated = %v", i, err)
				return
			}
			e.Close()
			e = e2
			m = m2
			for id := range want {
				if id > snap.ID {
					delete(want, id)
					delete(confirmed, id)
				}
			}
			confirmed[snap.ID] = true
			want[snap.ID] = contents(t, e, snap.ID)
			o.Fallback = false
		}
	}
}

// tryRestore restores snapshot id (0: the newest) of st and returns its
// contents.
func tryRestore(t *testing.T, st *replicatest.MemStore, id uint64) (Snapshot, map[string]string, error) {
	t.Helper()
	m := vfs.NewMem()
	snap, err := Restore(context.Background(), st, dir, RestoreOptions{ID: id, FS: m})
	if err != nil {
		return snap, nil, err
	}
	r := open(t, m, Options{})
	defer r.Close()
	return snap, contents(t, r, 0), nil
}

// stillListed says whether st lists snapshot id.
func stillListed(t *testing.T, st *replicatest.MemStore, id uint64) bool {
	rs, err := ReplicaSnapshots(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.ID == id {
			return true
		}
	}
	return false
}
