package instadump

import (
	"errors"
	"fmt"
	"maps"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/par"
	"github.com/instadump/instadump/internal/vfs"
)

func newMapT[K comparable, V any](t *testing.T, db *DB, name string) *Map[K, V] {
	t.Helper()
	m, err := NewMap[K, V](db, name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func collect[K comparable, V any](m *Map[K, V]) map[K]V {
	out := map[K]V{}
	for k, v := range m.All() {
		out[k] = v
	}
	return out
}

// ref returns where the current snapshot keeps state name.
func refOf(t *testing.T, db *DB, name string) (base, deltas int) {
	t.Helper()
	r, ok := db.eng.Lookup(0, name)
	if !ok {
		t.Fatalf("%s is not in the current snapshot", name)
	}
	return len(r.Base), len(r.Deltas)
}

func TestMapBasics(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	m := newMapT[string, int](t, db, "m")
	if m.Len() != 0 || m.Name() != "m" {
		t.Fatal("a new map is not empty")
	}
	for i := range 100 {
		m.Set(fmt.Sprint("k", i), i)
	}
	m.Delete("k5")
	m.Delete("absent")
	if v, ok := m.Get("k7"); !ok || v != 7 || m.Len() != 99 {
		t.Fatalf("get %d %v, len %d", v, ok, m.Len())
	}
	if _, ok := m.Get("k5"); ok {
		t.Fatal("deleted key found")
	}
	s1 := saveT(t, db)
	if b, d := refOf(t, db, "m"); b != 1 || d != 0 {
		t.Fatalf("first save: %d parts, %d deltas", b, d)
	}
	m.Set("k1", -1)
	m.Delete("k2")
	m.Set("new", 1000)
	s2 := saveT(t, db)
	if b, d := refOf(t, db, "m"); b != 1 || d != 1 || s2.Bytes >= s1.Bytes {
		t.Fatalf("second save: %d parts, %d deltas, %d bytes (first %d)", b, d, s2.Bytes, s1.Bytes)
	}
	want := collect(m)
	db.Close()
	db = openT(t, dir)
	m = newMapT[string, int](t, db, "m")
	if got := collect(m); !maps.Equal(got, want) || m.Len() != len(want) {
		t.Fatalf("reopened: %d entries, want %d", len(got), len(want))
	}
	// Nothing changed: nothing written.
	if s := saveT(t, db); s.ID != s2.ID {
		t.Fatalf("a save with nothing changed made snapshot %d", s.ID)
	}
}

// A save writes only the keys changed, until the deltas pass an eighth
// of the base: then the base is rewritten and the chain starts over.
func TestMapChainRewritten(t *testing.T) {
	db := openT(t, t.TempDir())
	m := newMapT[int, string](t, db, "m")
	for i := range 1000 {
		m.Set(i, fmt.Sprintf("value-%06d", i))
	}
	saveT(t, db)
	rewrites := 0
	for round := range 40 {
		for i := range 20 {
			m.Set((round*37+i)%1000, fmt.Sprintf("round-%06d", round))
		}
		saveT(t, db)
		if _, d := refOf(t, db, "m"); d == 0 {
			rewrites++
		}
	}
	if rewrites == 0 || rewrites > 10 {
		t.Fatalf("%d base rewrites in 40 saves of 2%% of the keys", rewrites)
	}
	want := collect(m)
	if err := db.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := collect(m); !maps.Equal(got, want) {
		t.Fatal("reload differs")
	}
}

// ReloadFrom gives the map exactly as an older snapshot had it, and the
// next save writes it in full.
func TestMapReloadFrom(t *testing.T) {
	db := openT(t, t.TempDir(), WithRetain(5))
	m := newMapT[string, int](t, db, "m")
	var history []map[string]int
	var ids []uint64
	for round := range 4 {
		for i := range 10 {
			k := fmt.Sprint(i)
			if (i+round)%3 == 0 {
				m.Delete(k)
			} else {
				m.Set(k, round*100+i)
			}
		}
		ids = append(ids, saveT(t, db).ID)
		history = append(history, collect(m))
	}
	for i, id := range ids {
		if err := db.ReloadFrom(id); err != nil {
			t.Fatal(err)
		}
		if got := collect(m); !maps.Equal(got, history[i]) || m.Len() != len(history[i]) {
			t.Fatalf("snapshot %d: %v, want %v", id, got, history[i])
		}
	}
	if err := db.ReloadFrom(ids[1]); err != nil {
		t.Fatal(err)
	}
	saveT(t, db)
	if _, d := refOf(t, db, "m"); d != 0 {
		t.Fatalf("after ReloadFrom an older snapshot, the save wrote a delta on top of %d", d)
	}
	if err := db.Reload(); err != nil || !maps.Equal(collect(m), history[1]) {
		t.Fatalf("reload: %v", err)
	}
}

// Transactions cover maps: all or nothing, and never half in a snapshot.
func TestMapAtomically(t *testing.T) {
	db := openT(t, t.TempDir())
	m := newMapT[string, int](t, db, "acct")
	m.Set("a", 100)
	m.Set("b", 0)
	boom := errors.New("boom")
	err := db.Atomically(func(tx *Tx) error {
		a, _ := m.GetIn(tx, "a")
		m.SetIn(tx, "a", a-10)
		m.SetIn(tx, "b", 10)
		m.DeleteIn(tx, "gone")
		if v, _ := m.GetIn(tx, "a"); v != 90 {
			t.Errorf("GetIn after SetIn: %d", v)
		}
		if v, _ := m.Get("a"); v != 100 {
			t.Errorf("Get inside: %d", v)
		}
		return boom
	})
	if !errors.Is(err, boom) || collect(m)["a"] != 100 {
		t.Fatalf("rolled back: %v %v", err, collect(m))
	}
	m.Set("gone", 1)
	if err := db.Atomically(func(tx *Tx) error {
		m.SetIn(tx, "a", 90)
		m.DeleteIn(tx, "gone")
		if _, ok := m.GetIn(tx, "gone"); ok {
			t.Error("GetIn sees a deleted key")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := collect(m); got["a"] != 90 || len(got) != 2 {
		t.Fatalf("applied: %v", got)
	}
}

// Transfers between keys run while saves and All iterations do: every
// snapshot, and every view All gives, holds the same total.
func TestMapConsistentCuts(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, WithRetain(50))
	m := newMapT[int, int](t, db, "m")
	const keys, total = 5000, 5000 * 10
	for i := range keys {
		m.Set(i, 10)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			rng := rand.New(rand.NewSource(int64(w)))
			for !stop.Load() {
				a, b := rng.Intn(keys), rng.Intn(keys)
				if a == b {
					continue
				}
				db.Atomically(func(tx *Tx) error {
					x, _ := m.GetIn(tx, a)
					y, _ := m.GetIn(tx, b)
					m.SetIn(tx, a, x-1)
					m.SetIn(tx, b, y+1)
					return nil
				})
			}
		})
	}
	sum := func(vals map[int]int) int {
		s := 0
		for _, v := range vals {
			s += v
		}
		return s
	}
	for range 30 {
		if got := sum(collect(m)); got != total {
			t.Fatalf("All saw a total of %d", got)
		}
		saveT(t, db)
	}
	stop.Store(true)
	wg.Wait()
	snaps, _ := db.Snapshots()
	for _, s := range snaps {
		if err := db.ReloadFrom(s.ID); err != nil {
			t.Fatal(err)
		}
		if got := sum(collect(m)); got != total || m.Len() != keys {
			t.Fatalf("snapshot %d: total %d, %d keys", s.ID, got, m.Len())
		}
	}
}

// A base of many parts loads on every core into the same map.
func TestMapManyParts(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	type rec struct {
		Name string
		N    int
	}
	m := newMapT[string, rec](t, db, "big")
	k := newMapT[bool, int](t, db, "odd-keys") // not a string or an integer: another hash
	n := 3*baseEntriesPerPart + 123
	for i := range n {
		m.Set(fmt.Sprintf("key-%07d", i), rec{fmt.Sprint(i), i})
	}
	k.Set(true, 1)
	k.Set(false, 2)
	saveT(t, db)
	if b, _ := refOf(t, db, "big"); b != 3 {
		t.Fatalf("%d parts", b)
	}
	want, wantK := collect(m), collect(k)
	db.Close()
	db = openT(t, dir)
	m = newMapT[string, rec](t, db, "big")
	k = newMapT[bool, int](t, db, "odd-keys")
	if got := collect(m); !maps.Equal(got, want) || m.Len() != n {
		t.Fatalf("reloaded %d of %d entries", m.Len(), n)
	}
	if !maps.Equal(collect(k), wantK) {
		t.Fatal("odd keys differ")
	}
}

// A save that fails writes its keys at the next one.
func TestMapFailedSaveKeepsChanges(t *testing.T) {
	mem := vfs.NewMem()
	inj := &vfs.Nth{Kinds: vfs.OpWrite, Err: vfs.ENOSPC}
	db := openT(t, "db", WithFS(vfs.WithErrors(mem, inj)))
	m := newMapT[string, string](t, db, "m")
	for i := range 100 {
		m.Set(fmt.Sprint(i), "v")
	}
	saveT(t, db)
	m.Set("1", "changed")
	m.Delete("2")
	inj.N = inj.Count() + 1
	if _, err := db.Save(); !errors.Is(err, vfs.ENOSPC) {
		t.Fatalf("save: %v", err)
	}
	m.Set("3", "after")
	saveT(t, db)
	want := collect(m)
	if err := db.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := collect(m); !maps.Equal(got, want) || got["1"] != "changed" {
		t.Fatalf("after a failed save and a good one: %v", got)
	}
}

// Maps and values are told apart: a name holds one or the other.
func TestMapKindMismatch(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	newStateT(t, db, "v", 1)
	newMapT[string, int](t, db, "m").Set("x", 1)
	saveT(t, db)
	db.Close()
	db = openT(t, dir)
	var de *DecodeError
	if _, err := NewMap[string, int](db, "v"); !errors.As(err, &de) || de.State != "v" || !strings.Contains(err.Error(), "register it with NewState") {
		t.Fatalf("a value as a map: %v", err)
	} else {
		t.Log(err)
	}
	if _, err := NewState(db, "m", 0); !errors.As(err, &de) || de.State != "m" || !strings.Contains(err.Error(), "register it with NewMap") {
		t.Fatalf("a map as a value: %v", err)
	} else {
		t.Log(err)
	}
	if _, err := NewMap[string, string](db, "m"); !errors.Is(err, ErrTypeMismatch) {
		t.Fatalf("a map of ints as strings: %v", err)
	} else if msg := err.Error(); strings.Contains(msg, "MigrateFrom") || !strings.Contains(msg, "a Map has no migrations") {
		// MigrateFrom is a StateOption: a Map cannot take one.
		t.Fatalf("a map of ints as strings gives wrong advice: %v", err)
	}
	if _, err := NewMap[string, func()](db, "f"); !errors.Is(err, ErrUnsupportedType) {
		t.Fatalf("a map of funcs: %v", err)
	}
	// A dropped map starts anew with its name.
	if err := db.Drop("m"); err != nil {
		t.Fatal(err)
	}
	if m := newMapT[string, string](t, db, "m"); m.Len() != 0 {
		t.Fatal("a dropped map came back with entries")
	}
	saveT(t, db)
}

// A Map whose newest delta is damaged: without fallback the open fails
// naming the file; with it, the Map holds what the snapshot before had, and the
// segment of the delta is kept aside.
func TestMapFallback(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	m := newMapT[string, int](t, db, "m")
	for i := range 100 {
		m.Set(fmt.Sprint(i), i)
	}
	saveT(t, db)
	m.Set("1", -1)
	m.Delete("2")
	snap := saveT(t, db)
	db.Close()
	seg := filepath.Join(dir, fmt.Sprintf("%06d.seg", snap.ID))
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatalf("the delta's segment: %v", err)
	}
	data[len(data)/2] ^= 0x10
	os.WriteFile(seg, data, 0o644)

	var ce *CorruptError
	if _, err := Open(dir); !errors.As(err, &ce) || ce.File != seg {
		t.Fatalf("Open over a damaged delta: %v", err)
	}
	db = openT(t, dir, WithFallback())
	if rec := db.Recovery(); !rec.FellBack || rec.UsedID != snap.ID-1 {
		t.Fatalf("recovery %+v", rec)
	}
	m = newMapT[string, int](t, db, "m")
	if v, _ := m.Get("1"); v != 1 || m.Len() != 100 {
		t.Fatalf("after fallback: m[1]=%d, %d entries; want the first snapshot's", v, m.Len())
	}
	if _, err := os.Stat(seg + ".broken"); err != nil {
		t.Fatalf("the damaged segment is not kept aside: %v", err)
	}
}

// A failure of loading a base's parts keeps its kind: a chunk whose
// decompressor panicked, which the read reports as corruption, stays
// ErrCorrupt (not a mismatch advising to drop the map); a panic of the
// map's own decoding is an internal error naming the map, neither.
func TestMapPartsErrorKinds(t *testing.T) {
	m, err := newMap[string, int]("parts")
	if err != nil {
		t.Fatal(err)
	}
	pe := &par.PanicError{Index: 2, Value: "boom", Stack: []byte("the stack")}
	corrupt := errs.CorruptCause(pe, "000001.seg", 40, "value %q: decompressing the chunk panicked: %v", "parts", pe.Value)
	got := m.partsError(corrupt)
	var de *DecodeError
	if !errors.Is(got, ErrCorrupt) || errors.Is(got, ErrTypeMismatch) || errors.As(got, &de) {
		t.Fatalf("a damaged chunk: %v", got)
	}
	got = m.partsError(pe)
	var back *par.PanicError
	if errors.Is(got, ErrTypeMismatch) || errors.Is(got, ErrCorrupt) || errors.As(got, &de) || !errors.As(got, &back) || back != pe ||
		!strings.Contains(got.Error(), `"parts"`) || !strings.Contains(got.Error(), "internal error") ||
		strings.Contains(got.Error(), "Drop") || !strings.Contains(got.Error(), "the stack") {
		t.Fatalf("a panic of the map's decoding: %v", got)
	}
}
