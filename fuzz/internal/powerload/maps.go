package powerload

import (
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/instadump/instadump"
)

// Maps in the workloads: Maps of blobs (Map[string][]byte), set and
// deleted key by key, and a Map of accounts (Map[string]int) between
// whose keys each step of a workload with MapAccounts moves an amount,
// in the same Atomically as the rest of the step.

// MapAcctsName is the Map of accounts, and MapTotal what its keys hold
// together from step 1 on (step 1 pays it into its first account).
const (
	MapAcctsName = "maccts"
	MapTotal     = 100_000
	mapAccts     = 12 // the accounts' keys are a00 ... a11
)

// MapValue returns the bytes a Map's key holds when step k set it with
// size bytes.
func MapValue(seed int64, m, key string, k, size int) []byte {
	return Blob(seed, m+"/"+key, k, size)
}

// mapEntry is a key of a Map as the model knows it: set, or deleted.
type mapEntry struct {
	ref blobRef
	del bool
}

// mapExp is a Map of blobs as the model knows it after a step: a base
// shared by the steps after it, and the changes since (so that a step
// costs what it changed, even for a Map of many keys).
type mapExp struct {
	base map[string]blobRef // never changed once shared
	over map[string]mapEntry
	n    int
}

func (m *mapExp) get(k string) (blobRef, bool) {
	if e, ok := m.over[k]; ok {
		return e.ref, !e.del
	}
	r, ok := m.base[k]
	return r, ok
}

// with returns m after step's sets (key → size) and then deletes.
func (m *mapExp) with(step int, sets map[string]int, dels []string) *mapExp {
	n := &mapExp{base: m.base, over: maps.Clone(m.over), n: m.n}
	if n.over == nil {
		n.over = map[string]mapEntry{}
	}
	for k, size := range sets {
		if _, had := n.get(k); !had {
			n.n++
		}
		n.over[k] = mapEntry{ref: blobRef{step, size}}
	}
	for _, k := range dels {
		if _, had := n.get(k); had {
			n.n--
			n.over[k] = mapEntry{del: true}
		}
	}
	if len(n.over) > 1024+len(n.base)/64 { // fold the changes into a new base
		b := maps.Clone(n.base)
		if b == nil {
			b = map[string]blobRef{}
		}
		for k, e := range n.over {
			if e.del {
				delete(b, k)
			} else {
				b[k] = e.ref
			}
		}
		n.base, n.over = b, map[string]mapEntry{}
	}
	return n
}

// keys returns the Map's keys, sorted.
func (m *mapExp) keys() []string {
	var out []string
	for k := range m.base {
		if _, changed := m.over[k]; !changed {
			out = append(out, k)
		}
	}
	for k, e := range m.over {
		if !e.del {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// mapTransfer moves up to amount from account from to account to of
// bal (read by get, written by put: 0 deletes), as both the child's
// transaction and the model do.
func mapTransfer(from, to string, amount int, get func(string) int, put func(string, int)) {
	if from == to {
		return
	}
	f, t := get(from), get(to)
	amount = min(amount, f)
	put(from, f-amount)
	put(to, t+amount)
}

func mapAcct(i int) string { return fmt.Sprintf("a%02d", i) }

// checkMaps compares the loaded Maps with e, key by key.
func (st *states) checkMaps(seed int64, e *Expected) []string {
	var bad []string
	for _, name := range slices.Sorted(maps.Keys(st.maps)) {
		m, want := st.maps[name], e.Maps[name]
		if want == nil {
			want = &mapExp{}
		}
		seen := 0
		for k, v := range m.All() {
			seen++
			ref, ok := want.get(k)
			switch {
			case !ok:
				bad = append(bad, fmt.Sprintf("%s[%s] holds %d bytes, want no such key", name, k, len(v)))
			case string(v) != string(MapValue(seed, name, k, ref.step, ref.size)):
				bad = append(bad, fmt.Sprintf("%s[%s] %.30q (%d bytes), want the one of step %d (%d bytes)", name, k, v, len(v), ref.step, ref.size))
			}
			if len(bad) > 5 {
				return bad
			}
		}
		if seen != want.n || m.Len() != want.n {
			missing := 0
			for _, k := range want.keys() {
				if _, ok := m.Get(k); !ok {
					if missing++; missing <= 3 {
						bad = append(bad, fmt.Sprintf("%s[%s] missing", name, k))
					}
				}
			}
			bad = append(bad, fmt.Sprintf("%s holds %d keys (Len %d), want %d", name, seen, m.Len(), want.n))
		}
	}
	if st.maccts != nil {
		sum := 0
		for k, v := range st.maccts.All() {
			sum += v
			if w, ok := e.MapAccts[k]; !ok || w != v {
				bad = append(bad, fmt.Sprintf("%s[%s] %d, want %s", MapAcctsName, k, v, balance(w, ok)))
			}
		}
		for k, w := range e.MapAccts {
			if _, ok := st.maccts.Get(k); !ok {
				bad = append(bad, fmt.Sprintf("%s[%s] missing, want %d", MapAcctsName, k, w))
			}
		}
		if e.Step > 0 && sum != MapTotal {
			bad = append(bad, fmt.Sprintf("the Map's accounts hold %d, not %d: half a transaction (I3)", sum, MapTotal))
		}
	}
	return bad
}

func balance(v int, ok bool) string {
	if !ok {
		return "no such key"
	}
	return strconv.Itoa(v)
}

// mapKeys counts the keys a check of e compares.
func (e *Expected) mapKeys() int {
	n := len(e.MapAccts)
	for _, m := range e.Maps {
		n += m.n
	}
	return n
}

// registerMaps registers w's Maps on db.
func (w *Workload) registerMaps(db *instadump.DB, st *states) error {
	var err error
	for _, n := range w.Maps {
		if st.maps[n], err = instadump.NewMap[string, []byte](db, n); err != nil {
			return err
		}
	}
	if w.MapAccounts {
		if st.maccts, err = instadump.NewMap[string, int](db, MapAcctsName); err != nil {
			return err
		}
	}
	return nil
}

// applyMaps makes step k's changes to the Maps in tx.
func (st *states) applyMaps(tx *instadump.Tx, seed int64, k int, c Change) {
	for _, name := range slices.Sorted(maps.Keys(c.MapSets)) {
		for key, size := range c.MapSets[name] {
			st.maps[name].SetIn(tx, key, MapValue(seed, name, key, k, size))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.MapDels)) {
		for _, key := range c.MapDels[name] {
			st.maps[name].DeleteIn(tx, key)
		}
	}
	if st.maccts == nil {
		return
	}
	get := func(a string) int { v, _ := st.maccts.GetIn(tx, a); return v }
	put := func(a string, v int) {
		if v == 0 {
			st.maccts.DeleteIn(tx, a)
		} else {
			st.maccts.SetIn(tx, a, v)
		}
	}
	if k == 1 {
		put(mapAcct(0), MapTotal)
		return
	}
	mapTransfer(c.MFrom, c.MTo, c.MAmount, get, put)
}

// nextMaps folds step n's changes c into the Maps of e.
func (e *Expected) nextMaps(n *Expected, c Change) {
	n.Maps = make(map[string]*mapExp, len(e.Maps))
	for name, m := range e.Maps {
		n.Maps[name] = m
	}
	for name := range c.MapSets {
		if n.Maps[name] == nil {
			n.Maps[name] = &mapExp{}
		}
	}
	for name := range c.MapDels {
		if n.Maps[name] == nil {
			n.Maps[name] = &mapExp{}
		}
	}
	for name, m := range n.Maps {
		if len(c.MapSets[name]) > 0 || len(c.MapDels[name]) > 0 {
			n.Maps[name] = m.with(n.Step, c.MapSets[name], c.MapDels[name])
		}
	}
	if e.MapAccts == nil {
		return
	}
	n.MapAccts = maps.Clone(e.MapAccts)
	get := func(a string) int { return n.MapAccts[a] }
	put := func(a string, v int) {
		if v == 0 {
			delete(n.MapAccts, a)
		} else {
			n.MapAccts[a] = v
		}
	}
	if n.Step == 1 {
		put(mapAcct(0), MapTotal)
		return
	}
	mapTransfer(c.MFrom, c.MTo, c.MAmount, get, put)
}
