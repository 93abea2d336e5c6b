package engine

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/instadump/instadump/internal/vfs"
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
	seeds := 1
	if v, err := strconv.Atoi(os.Getenv("INSTADUMP_SHIP_SEEDS")); err == nil && v > 0 {
		seeds = v
	}
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
	m := vfs.NewMem()
	want := map[uint64]map[string]string{}
	fallback := false
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
