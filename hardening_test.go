package instadump

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/instadump/instadump/engine"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/vmihailenco/msgpack/v5"
)

// boom's encoder panics, as a buggy MarshalMsgpack may.
type boom struct{ Bad bool }

func (b boom) MarshalMsgpack() ([]byte, error) {
	if b.Bad {
		panic("MarshalMsgpack bug")
	}
	return msgpack.Marshal(1)
}

func (b *boom) UnmarshalMsgpack(data []byte) error { return nil }

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".seg") {
			out = append(out, e.Name())
		}
	}
	return out
}

// A value whose encoder panics makes its Save fail, naming the state,
// wherever it is encoded: on the Save's goroutine or ahead on another.
// Nothing leaks (no goroutine, no segment file), and the next Save works
// once the value is fixed.
func TestEncoderPanicIsAnError(t *testing.T) {
	for _, n := range []int{1, 50} { // alone: encoded by the Save; among many: ahead
		t.Run(fmt.Sprint(n, " states"), func(t *testing.T) {
			dir := t.TempDir()
			db := openT(t, dir)
			for i := range n - 1 {
				newStateT(t, db, fmt.Sprintf("a%03d", i), i)
			}
			bad := newStateT(t, db, "z-bad", boom{})
			saveT(t, db)
			files := segmentFiles(t, dir)
			goroutines := runtime.NumGoroutine()
			bad.Set(boom{Bad: true})
			for i := range n - 1 {
				db.members[fmt.Sprintf("a%03d", i)].(*State[int]).Set(-i)
			}
			_, err := db.Save()
			if err == nil || !strings.Contains(err.Error(), `"z-bad"`) || !strings.Contains(err.Error(), "panic") || strings.Count(err.Error(), "instadump:") != 1 {
				t.Fatalf("save: %v", err)
			}
			// A helper the Save waited for may not have quite exited:
			// a goroutine that leaks never does.
			for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > goroutines && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			if got := runtime.NumGoroutine(); got > goroutines {
				t.Fatalf("%d goroutines after the failed save, %d before", got, goroutines)
			}
			if got := segmentFiles(t, dir); !slices.Equal(got, files) {
				t.Fatalf("segments %v after the failed save, %v before", got, files)
			}
			bad.Set(boom{})
			if s := saveT(t, db); s.ID != 2 {
				t.Fatalf("snapshot %d", s.ID)
			}
		})
	}
}

// A value that cannot be encoded at Save (a chan in an any) fails that
// Save naming the state; the next works once it is fixed.
func TestUnencodableValueAtSave(t *testing.T) {
	db := openT(t, t.TempDir())
	s := newStateT[any](t, db, "loose", 1)
	saveT(t, db)
	s.Set(make(chan int))
	saveFails(t, db, "loose", "a chan")
	s.Set(2)
	saveT(t, db)
}

// Types that cannot be stored are refused at registration, naming the
// type and where in it: they would save and then never load again, or
// fail every Save.
func TestUnstorableTypesRefused(t *testing.T) {
	db := openT(t, t.TempDir())
	type withFunc struct {
		Name string
		Hook func()
	}
	type withErr struct{ Inner struct{ Err error } }
	type skipped struct {
		Hook func() `msgpack:"-"`
		ch   chan int
	}
	for name, err := range map[string]error{
		"stringer": func() error { _, err := NewState[fmt.Stringer](db, "stringer", nil); return err }(),
		"error":    func() error { _, err := NewState[error](db, "error", nil); return err }(),
		"func":     func() error { _, err := NewState(db, "func", withFunc{}); return err }(),
		"nested":   func() error { _, err := NewState(db, "nested", []map[string]withErr{}); return err }(),
		"complex":  func() error { _, err := NewState(db, "complex", complex(1, 2)); return err }(),
	} {
		if !errors.Is(err, ErrUnsupportedType) || !strings.Contains(err.Error(), quote(name)) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if _, err := NewState(db, "nested2", []map[string]withErr{}); !strings.Contains(err.Error(), ".Inner.Err") {
		t.Fatalf("the path is not named: %v", err)
	}
	// Left out by tag, or unexported: fine.
	newStateT(t, db, "skipped", skipped{ch: make(chan int)})
	newStateT[any](t, db, "any", nil)
}

// Calls that once waited forever inside Atomically's and Update's
// functions work there now.
func TestReentrantCalls(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	a := newStateT(t, db, "a", 1)
	saveT(t, db)
	var inner Snapshot
	err := db.Atomically(func(tx *Tx) error {
		a.SetIn(tx, 2)
		var err error
		if inner, err = db.Save(); err != nil { // the transaction is not in it
			return err
		}
		b, err := NewState(db, "b", "x")
		if err != nil {
			return err
		}
		b.SetIn(tx, "y")
		return db.Drop("b")
	})
	if err != nil || inner.ID != 1 || a.Get() != 2 {
		t.Fatalf("Atomically with Save, NewState, Drop inside: %v, inner snapshot %d, a=%d", err, inner.ID, a.Get())
	}
	// A Reload inside makes the transaction fail: what it read was
	// reloaded under it.
	err = db.Atomically(func(tx *Tx) error {
		a.SetIn(tx, a.GetIn(tx)+10)
		return db.Reload()
	})
	if !errors.Is(err, ErrReloaded) || a.Get() != 1 {
		t.Fatalf("Atomically with Reload inside: %v, a=%d", err, a.Get())
	}
	a.Update(func(n int) int {
		if _, err := db.Save(); err != nil {
			t.Error(err)
		}
		return n + 1
	})
	if a.Get() != 2 {
		t.Fatalf("a=%d", a.Get())
	}
	// Close inside: the transaction still applies, in memory.
	err = db.Atomically(func(tx *Tx) error {
		a.SetIn(tx, 7)
		return db.Close()
	})
	if err != nil || a.Get() != 7 {
		t.Fatalf("Close inside Atomically: %v, a=%d", err, a.Get())
	}
	if _, err := db.Save(); !errors.Is(err, ErrClosed) {
		t.Fatalf("save after close: %v", err)
	}
}

// A FIFO in the DB directory never makes an open hang: as CURRENT, as a
// segment a snapshot uses, named like an orphan segment, as LOCK.
func TestFIFOsNeverHang(t *testing.T) {
	build := func(t *testing.T) string {
		dir := filepath.Join(t.TempDir(), "db")
		db := openT(t, dir)
		newStateT(t, db, "a", 1)
		saveT(t, db)
		db.Close()
		return dir
	}
	fifo := func(t *testing.T, path string) {
		os.Remove(path)
		if err := syscall.Mkfifo(path, 0o644); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
	}
	t.Run("orphan", func(t *testing.T) {
		dir := build(t)
		fifo(t, filepath.Join(dir, "000099.seg"))
		for _, opts := range [][]Option{{WithReadOnly()}, nil} {
			db, err := Open(dir, opts...)
			if err != nil {
				t.Fatalf("open %v: %v", opts, err)
			}
			if s := newStateT(t, db, "a", 0); s.Get() != 1 {
				t.Fatalf("a=%d", s.Get())
			}
			db.Close()
		}
	})
	for _, name := range []string{"CURRENT", "000001.seg", "LOCK"} {
		t.Run(name, func(t *testing.T) {
			dir := build(t)
			fifo(t, filepath.Join(dir, name))
			_, err := Open(dir)
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Fatalf("open: %v", err)
			}
			if name != "LOCK" {
				if _, err := Open(dir, WithReadOnly()); err == nil {
					t.Fatal("read-only open succeeded")
				}
			}
		})
	}
	t.Run("CURRENT with fallback", func(t *testing.T) {
		dir := build(t)
		fifo(t, filepath.Join(dir, "CURRENT"))
		db := openT(t, dir, WithFallback())
		if !db.Recovery().FellBack || newStateT(t, db, "a", 0).Get() != 1 {
			t.Fatalf("recovery %+v", db.Recovery())
		}
	})
}

// rawState commits raw bytes as state name's value, as a damaged or
// crafted file whose checksums hold would give them.
func rawState(t *testing.T, db *DB, name string, raw []byte) {
	t.Helper()
	if _, err := db.eng.Commit([]engine.Write{{Name: name, Kind: engine.ValueState, Parts: []io.WriterTo{bytes.NewReader(raw)}}}, nil); err != nil {
		t.Fatal(err)
	}
}

// Numbers that do not fit their Go type are a mismatch, never a value cut
// to fit: at the top, in struct fields, in slices and map keys.
func TestStrictNumbers(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	newStateT(t, db, "big", 300)
	newStateT(t, db, "neg", -5)
	newStateT(t, db, "frac", 1.5)
	newStateT(t, db, "rec", struct{ N int }{1000})
	newStateT(t, db, "list", []int{1, 70000})
	newStateT(t, db, "keys", map[int]bool{-1: true})
	saveT(t, db)
	db.Close()
	db = openT(t, dir)
	for name, err := range map[string]error{
		"big":  func() error { _, err := NewState[int8](db, "big", 0); return err }(),
		"neg":  func() error { _, err := NewState[uint32](db, "neg", 0); return err }(),
		"frac": func() error { _, err := NewState[int](db, "frac", 0); return err }(),
		"rec":  func() error { _, err := NewState(db, "rec", struct{ N int8 }{}); return err }(),
		"list": func() error { _, err := NewState[[]uint16](db, "list", nil); return err }(),
		"keys": func() error { _, err := NewState[map[uint]bool](db, "keys", nil); return err }(),
	} {
		var de *DecodeError
		if !errors.Is(err, ErrTypeMismatch) || !errors.As(err, &de) || de.State != name {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// What fits exactly is fine.
	if s, err := NewState[int16](db, "big", 0); err != nil || s.Get() != 300 {
		t.Fatalf("300 as int16: %v", err)
	}
	if s, err := NewState[float32](db, "frac", 0); err != nil || s.Get() != 1.5 {
		t.Fatalf("1.5 as float32: %v", err)
	}
}

// A cyclic value makes its Save fail, naming the state: no stack overflow.
func TestCyclicValues(t *testing.T) {
	type node struct {
		Next *node
		N    int
	}
	db := openT(t, t.TempDir())
	n := &node{N: 1}
	n.Next = n
	s := newStateT(t, db, "ring", n)
	saveFails(t, db, "ring", "a cycle")
	self := map[string]any{}
	self["self"] = self
	m := newStateT[any](t, db, "self", self)
	s.Set(&node{N: 2})
	saveFails(t, db, "self", "a map holding itself")
	m.Set(1)
	saveT(t, db)
}

// Lengths are never trusted: an array header claiming 4G elements in six
// bytes, and arrays nested a million deep, are errors, fast and small.
func TestDecodingNeverTrustsLengths(t *testing.T) {
	db := openT(t, t.TempDir())
	deep := append(bytes.Repeat([]byte{0x91}, 1<<20), 0xc0)
	rawState(t, db, "huge", []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0x01})
	rawState(t, db, "deep", deep)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := NewState[[]int64](db, "huge", nil); !errors.Is(err, ErrTypeMismatch) {
		t.Fatalf("huge: %v", err)
	}
	if _, err := NewState[any](db, "deep", nil); !errors.Is(err, ErrTypeMismatch) {
		t.Fatalf("deep: %v", err)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<20 {
		t.Fatalf("decoding allocated %d bytes", got)
	}
}

// saveFails checks that a Save fails, naming state name (holding what).
func saveFails(t *testing.T, db *DB, name, what string) {
	t.Helper()
	if _, err := db.Save(); err == nil || !strings.Contains(err.Error(), quote(name)) {
		t.Fatalf("save of %s in %q: %v", what, name, err)
	}
}

// segFailFS fails the creation of every segment while fail is set.
type segFailFS struct {
	engine.FS
	fail atomic.Bool
}

func (f *segFailFS) Create(name string) (engine.File, error) {
	if f.fail.Load() && strings.HasSuffix(name, ".seg") {
		return nil, errors.New("injected: no segment")
	}
	return f.FS.Create(name)
}

// A Save that fails hands its encode buffers back while writers that
// wait for a captured value to be encoded (Update, GetIn) may still run
// its encoding: the two never touch a buffer at once, and nothing a
// failed Save left half done is written later.
func TestFailedSaveRacesNoWriter(t *testing.T) {
	fsys := &segFailFS{FS: vfs.NewMem()}
	db := openT(t, "db", WithFS(fsys))
	var states []*State[[]int]
	for i := range 8 {
		states = append(states, newStateT(t, db, fmt.Sprintf("s%d", i), make([]int, 2000)))
	}
	fsys.fail.Store(true)
	stop := untilStopped(func(n int) bool {
		for _, s := range states {
			s.Update(func(v []int) []int { return append(slices.Clone(v[:len(v)-1]), n) })
		}
		return true
	})
	for range 200 {
		if _, err := db.Save(); err == nil {
			stop()
			t.Fatal("Save succeeded without segments")
		}
	}
	stop()
	fsys.fail.Store(false)
	saveT(t, db)
	want := make([][]int, len(states))
	for i, s := range states {
		want[i] = s.Get()
	}
	db.Close()
	db = openT(t, "db", WithFS(fsys))
	for i := range states {
		if got := newStateT(t, db, fmt.Sprintf("s%d", i), []int(nil)).Get(); !slices.Equal(got, want[i]) {
			t.Fatalf("s%d reloaded differs from what was saved", i)
		}
	}
}

// A state holding a map whose interface keys hold composite values
// ([2]int, a struct) would save and never load again (they decode as
// unhashable values): its Save fails, naming the state and the key's
// type, writes nothing, and the snapshot before it still loads.
func TestUnloadableMapKeysAtSave(t *testing.T) {
	for name, bad := range map[string]map[any]int{
		"array":  {[2]int{1, 2}: 1},
		"struct": {struct{ A, B int }{1, 2}: 1},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			db := openT(t, dir)
			s := newStateT(t, db, "loose-keys", map[any]int{"a": 1, 2: 2})
			saveT(t, db)
			files := segmentFiles(t, dir)
			s.Set(bad)
			_, err := db.Save()
			keyType := fmt.Sprintf("%T", slices.Collect(maps.Keys(bad))[0])
			if !errors.Is(err, ErrUnsupportedType) || !strings.Contains(err.Error(), `"loose-keys"`) || !strings.Contains(err.Error(), keyType) {
				t.Fatalf("save of a %s key: %v", keyType, err)
			}
			if got := segmentFiles(t, dir); !slices.Equal(got, files) {
				t.Fatalf("segments %v after the failed save, %v before", got, files)
			}
			db.Close()
			db = openT(t, dir)
			if s := newStateT(t, db, "loose-keys", map[any]int(nil)); len(s.Get()) != 2 || s.Get()["a"] != 1 {
				t.Fatalf("the snapshot before the failed save: %v", s.Get())
			}
		})
	}
}

// twoValues's MarshalMsgpack returns two msgpack values where its
// UnmarshalMsgpack reads one.
type twoValues struct{ N int }

func (v twoValues) MarshalMsgpack() ([]byte, error) {
	if v.N == 0 {
		return msgpack.Marshal(0)
	}
	return []byte{0x01, 0x02}, nil
}

func (v *twoValues) UnmarshalMsgpack(data []byte) error { return msgpack.Unmarshal(data, &v.N) }

// A marshaller whose output is not one msgpack value would save a state
// that never loads: its Save fails, naming the state and the type, writes
// nothing, and the snapshot before it still loads.
func TestMarshallerOutputCheckedAtSave(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	s := newStateT(t, db, "marshalled", []twoValues{{0}})
	saveT(t, db)
	files := segmentFiles(t, dir)
	s.Set([]twoValues{{0}, {1}})
	_, err := db.Save()
	if !errors.Is(err, ErrUnsupportedType) || !strings.Contains(err.Error(), `"marshalled"`) || !strings.Contains(err.Error(), "instadump.twoValues") {
		t.Fatalf("save: %v", err)
	}
	if got := segmentFiles(t, dir); !slices.Equal(got, files) {
		t.Fatalf("segments %v after the failed save, %v before", got, files)
	}
	db.Close()
	db = openT(t, dir)
	if s := newStateT(t, db, "marshalled", []twoValues(nil)); len(s.Get()) != 1 {
		t.Fatalf("the snapshot before the failed save: %v", s.Get())
	}
}

// shrinking's marshaller deletes every other entry of the map being
// saved: the map changes while it is encoded, as it would if the program
// wrote it during Save.
type shrinking struct{ N int }

var shrinkingMap map[string]shrinking

func (v shrinking) MarshalMsgpack() ([]byte, error) {
	for k, w := range shrinkingMap {
		if w != v {
			delete(shrinkingMap, k)
		}
	}
	return msgpack.Marshal(v.N)
}

func (v *shrinking) UnmarshalMsgpack(data []byte) error { return msgpack.Unmarshal(data, &v.N) }

// A map changed while Save encodes it fails that Save, naming the state,
// but not as a type that cannot be stored: the type is fine, the program
// changed the value under the Save.
func TestConcurrentChangeIsNotUnsupportedType(t *testing.T) {
	db := openT(t, t.TempDir())
	shrinkingMap = map[string]shrinking{}
	for i := range 100 { // more than the entries encoded in one group
		shrinkingMap[fmt.Sprint(i)] = shrinking{i}
	}
	defer func() { shrinkingMap = nil }()
	s := newStateT[map[string]shrinking](t, db, "shrinking", nil)
	s.Set(shrinkingMap)
	_, err := db.Save()
	if err == nil || !strings.Contains(err.Error(), `"shrinking"`) || !strings.Contains(err.Error(), "changed while it was encoded") {
		t.Fatalf("save: %v", err)
	}
	if errors.Is(err, ErrUnsupportedType) {
		t.Fatalf("a map changed during Save is reported as a type that cannot be stored: %v", err)
	}
}
