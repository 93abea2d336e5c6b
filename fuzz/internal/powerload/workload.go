// Package powerload is the workload, the child process and the checks
// that the power-loss tests share: fuzz's ext4 test and the FUSE test of
// the fuzz/powercut module. It uses only instadump's public API.
//
// A workload is deterministic: step k of a workload with a given seed
// makes the same changes every time, so the state after step k is known
// from k alone. The child saves after every step and prints the step it
// acknowledged; after the power cut the parent opens the DB, reads the
// step the recovered snapshot holds, and checks every value of it (and
// of every retained snapshot) against the state after that step.
//
// Every step moves an amount between accounts whose total never changes,
// in one Atomically with the step's other changes: a snapshot holding
// half of one would break the total (I3), and a snapshot mixing two
// steps would break the value-by-value check (I2).
//
// States are ints and byte slices; Maps are Maps of byte slices, set and
// deleted key by key, and a Map of accounts between whose keys each step
// of a workload with MapAccounts moves an amount too (maps.go): each a
// field of Change and of Expected, one case in apply, register and
// check, which compares them key by key.
package powerload

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/instadump/instadump"
)

// Accounts is how many accounts the transfers move amounts between, and
// Total what they always hold together.
const (
	Accounts = 5
	Total    = 1000
)

// Workload is a kind of saving program.
type Workload struct {
	Name string
	// Retain is the snapshots kept (instadump.WithRetain).
	Retain int
	// Ints and Blobs are the states besides "step" and the accounts.
	Ints, Blobs []string
	// Maps are Maps of blobs (Map[string][]byte); MapAccounts adds the
	// Map of accounts (MapAcctsName).
	Maps        []string
	MapAccounts bool
	// ReopenEvery makes the child close and reopen the DB after that
	// many saves (0: never).
	ReopenEvery int
	// CutWithin, if set, bounds the moment of the cut instead of the
	// rig's MaxDelay: for a DB whose open alone takes most of that.
	CutWithin time.Duration
	// change returns step k's changes besides the step and the transfer.
	change func(r *rand.Rand, k int) Change
}

// Change is what one step does.
type Change struct {
	From, To, Amount int            // the transfer
	Ints             map[string]int // int states set
	Blobs            map[string]int // blob states rewritten: name → size
	// Maps: keys set (map → key → size), then keys deleted (so a key in
	// both ends deleted: set and deleted in the same save).
	MapSets map[string]map[string]int
	MapDels map[string][]string
	// The transfer between keys of the Map of accounts (from step 2 on).
	MFrom, MTo string
	MAmount    int
}

// Workloads are the workloads the tests cycle through.
var Workloads = []*Workload{
	{
		Name: "one-state", Retain: 3, Blobs: []string{"doc"},
		change: func(r *rand.Rand, k int) Change {
			return Change{Blobs: map[string]int{"doc": 100 + r.IntN(64<<10)}}
		},
	},
	{
		Name: "many-states-gc", Retain: 2, Blobs: names("s", 60), Maps: []string{"gcmap"},
		change: func(r *rand.Rand, k int) Change {
			c := Change{Blobs: map[string]int{}}
			for n := 1 + r.IntN(3); n > 0; n-- {
				c.Blobs[fmt.Sprintf("s%03d", r.IntN(60))] = r.IntN(20 << 10)
			}
			c.MapSets, c.MapDels = mapChanges(r, "gcmap", 100, 2, 1, 4<<10)
			return c
		},
	},
	{
		// Every save rewrites 2000 states, so that its manifest record
		// is large and the manifest rolls over every few dozen saves.
		Name: "manifest-rollover", Retain: 3, Ints: names("n", 2000),
		change: func(r *rand.Rand, k int) Change {
			c := Change{Ints: map[string]int{}}
			for i := range 2000 {
				c.Ints[fmt.Sprintf("n%03d", i)] = k*10000 + i
			}
			return c
		},
	},
	{
		Name: "large-values", Retain: 2, Blobs: []string{"big0", "big1", "big2"},
		change: func(r *rand.Rand, k int) Change {
			return Change{Blobs: map[string]int{fmt.Sprint("big", r.IntN(3)): 1<<20 + r.IntN(3<<20)}}
		},
	},
	{
		Name: "reopen-and-continue", Retain: 3, Blobs: names("r", 20), ReopenEvery: 3,
		Maps: []string{"rmap"}, MapAccounts: true,
		change: func(r *rand.Rand, k int) Change {
			c := Change{Blobs: map[string]int{fmt.Sprintf("r%03d", r.IntN(20)): r.IntN(8 << 10)}}
			c.MapSets, c.MapDels = mapChanges(r, "rmap", 200, 4, 2, 2<<10)
			return c
		},
	},
	{
		// Keys set and deleted, some set and deleted again in one step.
		Name: "map-sets-deletes", Retain: 3, Maps: []string{"m"},
		change: func(r *rand.Rand, k int) Change {
			c := Change{}
			c.MapSets, c.MapDels = mapChanges(r, "m", 300, 8, 4, 2<<10)
			if r.IntN(3) == 0 { // a key set and deleted again in the same step
				key := fmt.Sprintf("k%06d", r.IntN(300))
				c.MapSets["m"][key] = r.IntN(100)
				c.MapDels["m"] = append(c.MapDels["m"], key)
			}
			return c
		},
	},
	{
		// A base of 200 keys and small steps: the deltas pass an eighth of
		// the base every few saves, and a save rewrites the base.
		Name: "map-compaction", Retain: 2, Maps: []string{"c"},
		change: func(r *rand.Rand, k int) Change {
			if k == 1 {
				return Change{MapSets: map[string]map[string]int{"c": fill(0, 200, 100)}}
			}
			c := Change{}
			c.MapSets, c.MapDels = mapChanges(r, "c", 220, 3, 1, 100)
			return c
		},
	},
	{
		// A Map grown by 10,000 keys a step to 140,000, its base then in
		// parts; after that a step changes a few dozen keys, and every
		// 64th save rewrites the base.
		Name: "map-large", Retain: 2, Maps: []string{"big"}, CutWithin: 800 * time.Millisecond,
		change: func(r *rand.Rand, k int) Change {
			if k <= 14 {
				return Change{MapSets: map[string]map[string]int{"big": fill((k-1)*10_000, k*10_000, 24)}}
			}
			c := Change{}
			c.MapSets, c.MapDels = mapChanges(r, "big", 150_000, 40, 10, 48)
			return c
		},
	},
	{
		// States and Maps in every step, the Map of accounts too.
		Name: "maps-and-states", Retain: 3, Ints: names("i", 20), Blobs: names("b", 5), ReopenEvery: 5,
		Maps: []string{"m1", "m2"}, MapAccounts: true,
		change: func(r *rand.Rand, k int) Change {
			c := Change{Ints: map[string]int{}, Blobs: map[string]int{}}
			for n := 1 + r.IntN(4); n > 0; n-- {
				c.Ints[fmt.Sprintf("i%03d", r.IntN(20))] = r.IntN(1 << 30)
			}
			if r.IntN(2) == 0 {
				c.Blobs[fmt.Sprintf("b%03d", r.IntN(5))] = r.IntN(16 << 10)
			}
			c.MapSets, c.MapDels = mapChanges(r, "m1", 500, 6, 3, 1<<10)
			s2, d2 := mapChanges(r, "m2", 50, 2, 2, 64)
			c.MapSets["m2"], c.MapDels["m2"] = s2["m2"], d2["m2"]
			return c
		},
	},
}

// mapChanges draws up to sets keys set (of at most size bytes) and up to
// dels deleted, among keys of Map m.
func mapChanges(r *rand.Rand, m string, keys, sets, dels, size int) (map[string]map[string]int, map[string][]string) {
	s := map[string]int{}
	for n := 1 + r.IntN(sets); n > 0; n-- {
		s[fmt.Sprintf("k%06d", r.IntN(keys))] = r.IntN(size + 1)
	}
	var d []string
	for n := r.IntN(dels + 1); n > 0; n-- {
		d = append(d, fmt.Sprintf("k%06d", r.IntN(keys)))
	}
	return map[string]map[string]int{m: s}, map[string][]string{m: d}
}

// fill returns keys from to to (not included), of size bytes.
func fill(from, to, size int) map[string]int {
	out := make(map[string]int, to-from)
	for i := from; i < to; i++ {
		out[fmt.Sprintf("k%06d", i)] = size
	}
	return out
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%03d", prefix, i)
	}
	return out
}

// ByName returns the workload called name, or nil.
func ByName(name string) *Workload {
	for _, w := range Workloads {
		if w.Name == name {
			return w
		}
	}
	return nil
}

func stepRand(seed int64, k int) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), uint64(k)))
}

// Step returns the changes of step k (from 1) under seed.
func (w *Workload) Step(seed int64, k int) Change {
	r := stepRand(seed, k)
	c := w.change(r, k)
	c.From, c.To, c.Amount = r.IntN(Accounts), r.IntN(Accounts), r.IntN(50)
	if w.MapAccounts {
		c.MFrom, c.MTo, c.MAmount = mapAcct(r.IntN(mapAccts)), mapAcct(r.IntN(mapAccts)), r.IntN(MapTotal/4)
	}
	return c
}

// Blob returns the bytes a blob state holds when step k wrote it with
// size bytes: a header naming them, then bytes that do not compress.
func Blob(seed int64, name string, k, size int) []byte {
	head := fmt.Sprintf("%s@%d/%d;", name, k, size)
	b := make([]byte, max(size, len(head)))
	copy(b, head)
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], uint64(seed))
	binary.LittleEndian.PutUint64(key[8:], uint64(k))
	copy(key[16:], name)
	rand.NewChaCha8(key).Read(b[len(head):])
	return b
}

// blobRef is a blob's value as the model knows it.
type blobRef struct{ step, size int }

// Expected is the state after a step.
type Expected struct {
	Step  int
	Accts [Accounts]int
	Ints  map[string]int
	Blobs map[string]blobRef
	// Maps key by key, and the Map of accounts (nil without one).
	Maps     map[string]*mapExp
	MapAccts map[string]int
}

func (w *Workload) initial() *Expected {
	e := &Expected{Ints: map[string]int{}, Blobs: map[string]blobRef{}, Maps: map[string]*mapExp{}}
	for i := range e.Accts {
		e.Accts[i] = Total / Accounts
	}
	for _, n := range w.Maps {
		e.Maps[n] = &mapExp{}
	}
	if w.MapAccounts {
		e.MapAccts = map[string]int{}
	}
	return e
}

func (e *Expected) next(c Change) *Expected {
	n := &Expected{Step: e.Step + 1, Accts: e.Accts, Ints: maps.Clone(e.Ints), Blobs: maps.Clone(e.Blobs)}
	n.Accts[c.From] -= c.Amount
	n.Accts[c.To] += c.Amount
	maps.Copy(n.Ints, c.Ints)
	for name, size := range c.Blobs {
		n.Blobs[name] = blobRef{n.Step, size}
	}
	e.nextMaps(n, c)
	return n
}

// Model folds a workload's steps, keeping the recent states.
type Model struct {
	w      *Workload
	seed   int64
	recent []*Expected // consecutive steps, oldest first
}

// NewModel returns the model of workload w under seed, at step 0.
func NewModel(w *Workload, seed int64) *Model {
	return &Model{w: w, seed: seed, recent: []*Expected{w.initial()}}
}

// keepRecent is how many steps back At can go cheaply.
const keepRecent = 32

// At returns the state after step k.
func (m *Model) At(k int) *Expected {
	if k < m.recent[0].Step {
		m.recent = []*Expected{m.w.initial()}
	}
	for last := m.recent[len(m.recent)-1]; last.Step < k; last = m.recent[len(m.recent)-1] {
		m.recent = append(m.recent, last.next(m.w.Step(m.seed, last.Step+1)))
		if len(m.recent) > keepRecent {
			m.recent = m.recent[1:]
		}
	}
	return m.recent[k-m.recent[0].Step]
}

// states are a DB's registered states of a workload.
type states struct {
	step  *instadump.State[int]
	accts [Accounts]*instadump.State[int]
	ints  map[string]*instadump.State[int]
	blobs map[string]*instadump.State[[]byte]
	maps  map[string]*instadump.Map[string, []byte]
	// maccts is the Map of accounts, or nil.
	maccts *instadump.Map[string, int]
}

// Open opens the DB in dir with w's options and registers its states.
func (w *Workload) open(dir string) (*instadump.DB, *states, error) {
	db, err := instadump.Open(dir, instadump.WithRetain(w.Retain))
	if err != nil {
		return nil, nil, err
	}
	st, err := w.register(db)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, st, nil
}

func (w *Workload) register(db *instadump.DB) (*states, error) {
	st := &states{ints: map[string]*instadump.State[int]{}, blobs: map[string]*instadump.State[[]byte]{},
		maps: map[string]*instadump.Map[string, []byte]{}}
	var err error
	if st.step, err = instadump.NewState(db, "step", 0); err != nil {
		return nil, err
	}
	for i := range st.accts {
		if st.accts[i], err = instadump.NewState(db, fmt.Sprint("acct", i), Total/Accounts); err != nil {
			return nil, err
		}
	}
	for _, n := range w.Ints {
		if st.ints[n], err = instadump.NewState(db, n, 0); err != nil {
			return nil, err
		}
	}
	for _, n := range w.Blobs {
		if st.blobs[n], err = instadump.NewState(db, n, []byte(nil)); err != nil {
			return nil, err
		}
	}
	if err := w.registerMaps(db, st); err != nil {
		return nil, err
	}
	return st, nil
}

// apply returns the transaction that makes step k's changes.
func (st *states) apply(seed int64, k int, c Change) func(tx *instadump.Tx) error {
	return func(tx *instadump.Tx) error {
		if got := st.step.GetIn(tx); got != k-1 {
			return fmt.Errorf("step %d follows step %d", k, got)
		}
		st.step.SetIn(tx, k)
		from, to := st.accts[c.From], st.accts[c.To]
		from.SetIn(tx, from.GetIn(tx)-c.Amount)
		to.SetIn(tx, to.GetIn(tx)+c.Amount)
		for n, v := range c.Ints {
			st.ints[n].SetIn(tx, v)
		}
		for n, size := range c.Blobs {
			st.blobs[n].SetIn(tx, Blob(seed, n, k, size))
		}
		st.applyMaps(tx, seed, k, c)
		return nil
	}
}

// check compares the loaded states with e, value by value.
func (st *states) check(seed int64, e *Expected) error {
	var bad []string
	if got := st.step.Get(); got != e.Step {
		bad = append(bad, fmt.Sprintf("step %d", got))
	}
	sum := 0
	for i, a := range st.accts {
		sum += a.Get()
		if a.Get() != e.Accts[i] {
			bad = append(bad, fmt.Sprintf("acct%d %d, want %d", i, a.Get(), e.Accts[i]))
		}
	}
	if sum != Total {
		bad = append(bad, fmt.Sprintf("the accounts hold %d, not %d: half a transaction (I3)", sum, Total))
	}
	for n, s := range st.ints {
		if got, want := s.Get(), e.Ints[n]; got != want {
			bad = append(bad, fmt.Sprintf("%s %d, want %d", n, got, want))
		}
	}
	for n, s := range st.blobs {
		got := s.Get()
		ref, ok := e.Blobs[n]
		switch {
		case !ok && got != nil:
			bad = append(bad, fmt.Sprintf("%s holds %d bytes, want none", n, len(got)))
		case ok && string(got) != string(Blob(seed, n, ref.step, ref.size)):
			bad = append(bad, fmt.Sprintf("%s %.30q (%d bytes), want the one of step %d (%d bytes)", n, got, len(got), ref.step, ref.size))
		}
	}
	bad = append(bad, st.checkMaps(seed, e)...)
	if len(bad) > 0 {
		if len(bad) > 5 {
			bad = append(bad[:5], fmt.Sprintf("and %d more", len(bad)-5))
		}
		return fmt.Errorf("snapshot of step %d: %s", e.Step, strings.Join(bad, "; "))
	}
	return nil
}
