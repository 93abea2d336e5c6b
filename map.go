package instadump

import (
	"fmt"
	"hash/maphash"
	"iter"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/instadump/instadump/internal/codec"
)

// Map is a state holding a map from K to V whose saves and loads cost
// what changed, not what it holds: a Save writes only the keys set or
// deleted since the previous snapshot, and the map on disk is a base plus
// a chain of such deltas, rewritten whole (without stopping writers) when
// the chain grows past an eighth of the base. Its methods are safe for
// concurrent use; it takes part in Save, Reload, ReloadFrom, Atomically,
// Drop and retention like a State.
//
// Values follow the rule of State: never change one in place after Set;
// set a new one. Keys are of a bool, string or integer kind (see NewMap),
// saved as msgpack like values.
//
// A Map is 1024 shards, each a Go map behind its own lock, created as
// keys arrive. A Save's cut swaps each shard's set of changed keys, and a
// writer about to change a shard that the Save has not encoded yet first
// copies what the Save needs of it (those keys, or the whole shard for a
// full rewrite): copy-on-write at the grain of a shard, so a writer waits
// at most for the copy of one shard, never for the map.
type Map[K comparable, V any] struct {
	name string
	pc   *codec.Pairs[K, V]
	hash func(K) uint64
	// keyMethods: keys are encoded or decoded, somewhere inside, by a
	// method of their type, which may not give back the key saved
	// (keysLoadBack).
	keyMethods bool
	shards     [mapShards]atomic.Pointer[shard[K, V]]
	count      atomic.Int64
	lk         atomic.Pointer[locks] // its DB's, or its own while unbound
	db         atomic.Pointer[DB]    // nil when unbound

	// Guarded by lk's cut lock.
	changed  int           // keys changed since the last cut
	needBase bool          // the next Save writes the whole map
	pending  *freeze[K, V] // a Save's capture not yet committed
}

// mapShards is the number of shards of a Map (a power of two).
const mapShards = 1024

type shard[K comparable, V any] struct {
	mu      sync.RWMutex
	m       map[K]V
	dirty   map[K]struct{}  // keys set or deleted since the last cut
	freezes []*freeze[K, V] // cuts that need this shard as it was, not copied yet
}

// mapEntry is a key with its value, or deleted.
type mapEntry[K comparable, V any] struct {
	k   K
	v   V
	del bool
}

// shardCopy is what a freeze copied of a shard: keys with their values,
// and (for a delta) keys deleted.
type shardCopy[K comparable, V any] struct {
	keys []K
	vals []V
	dels []K
}

// freeze is a cut of a Map: its shards (whole, or only the keys changed
// since the previous cut) as they were at one instant, copied from each
// shard when first needed: by a writer about to change it, or by whoever
// reads the cut.
type freeze[K comparable, V any] struct {
	full   bool
	rebase atomic.Bool                // a delete could not be written: the next Save writes the map whole
	count  int64                      // entries at the cut
	keys   [mapShards]map[K]struct{}  // not full: each shard's changed keys
	got    [mapShards]shardCopy[K, V] // copied entries
	done   [mapShards]bool            // copied; guarded by the shard's lock
}

func newMap[K comparable, V any](name string) (*Map[K, V], error) {
	pc, err := codec.ForPairs[K, V]()
	if err != nil {
		return nil, fmt.Errorf("%w: %v (map %s)", ErrUnsupportedType, err, quote(name))
	}
	m := &Map[K, V]{name: name, pc: pc, hash: hasherFor[K](), needBase: true, keyMethods: keyMethods(reflect.TypeFor[K]())}
	m.lk.Store(new(locks)) // its own until bound
	return m, nil
}

// hasherFor returns the hash that spreads keys over shards. For strings,
// integers, and arrays and structs of integers without padding it is the
// same in every run, so that a base saved in parts
// by shard loads each part into its own shards, on its own core.
func hasherFor[K comparable]() func(K) uint64 {
	t := reflect.TypeFor[K]()
	switch t.Kind() {
	case reflect.String:
		return func(k K) uint64 { return xxhash.Sum64String(*(*string)(unsafe.Pointer(&k))) }
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		size := t.Size()
		return func(k K) uint64 {
			var x uint64
			switch size {
			case 1:
				x = uint64(*(*uint8)(unsafe.Pointer(&k)))
			case 2:
				x = uint64(*(*uint16)(unsafe.Pointer(&k)))
			case 4:
				x = uint64(*(*uint32)(unsafe.Pointer(&k)))
			default:
				x = *(*uint64)(unsafe.Pointer(&k))
			}
			x ^= x >> 33 // a 64-bit finaliser: every bit of the key moves the top ones
			x *= 0xff51afd7ed558ccd
			x ^= x >> 33
			x *= 0xc4ceb9fe1a85ec53
			return x ^ x>>33
		}
	}
	if size := t.Size(); (t.Kind() == reflect.Array || t.Kind() == reflect.Struct) && plainMemory(t) {
		return func(k K) uint64 { return xxhash.Sum64(unsafe.Slice((*byte)(unsafe.Pointer(&k)), size)) }
	}
	// Others (bools; keys holding strings, whose bytes lie elsewhere, or
	// padding, whose bytes are not part of the key) get the hash of Go's
	// maps: equal keys hash equal, but only within one run.
	seed := maphash.MakeSeed()
	return func(k K) uint64 { return maphash.Comparable(seed, k) }
}

// plainMemory says whether two values of t are equal exactly when their
// memory is: t holds integers and bools only (a bool is one byte, 0 or
// 1), in arrays and structs with no padding and no blank fields (which
// == skips).
func plainMemory(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	case reflect.Array:
		return plainMemory(t.Elem())
	case reflect.Struct:
		var sum uintptr
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Name == "_" || f.Offset != sum || !plainMemory(f.Type) {
				return false
			}
			sum += f.Type.Size()
		}
		return sum == t.Size()
	}
	return false
}

func (m *Map[K, V]) shardOf(k K) int { return int(m.hash(k) >> (64 - 10)) }

// Name returns the map's name.
func (m *Map[K, V]) Name() string { return m.name }

// Len returns the number of entries.
func (m *Map[K, V]) Len() int { return int(m.count.Load()) }

// Get returns the value under k, and whether there is one.
func (m *Map[K, V]) Get(k K) (V, bool) {
	sh := m.shards[m.shardOf(k)].Load()
	if sh == nil {
		var zero V
		return zero, false
	}
	sh.mu.RLock()
	v, ok := sh.m[k]
	sh.mu.RUnlock()
	return v, ok
}

// Set sets the value under k. Like State.Set, it waits for a running
// Update or Atomically of the same DB, and never for a Save.
func (m *Map[K, V]) Set(k K, v V) {
	l := m.lockW()
	l.cmu.Lock()
	m.write(k, v, false)
	l.cmu.Unlock()
	l.wmu.Unlock()
}

// Delete removes k, if it is there.
func (m *Map[K, V]) Delete(k K) {
	l := m.lockW()
	l.cmu.Lock()
	var zero V
	m.write(k, zero, true)
	l.cmu.Unlock()
	l.wmu.Unlock()
}

// write sets or deletes k. Call with the cut lock held.
func (m *Map[K, V]) write(k K, v V, del bool) {
	i := m.shardOf(k)
	sh := m.shards[i].Load()
	if sh == nil {
		if del {
			return
		}
		sh = &shard[K, V]{}
		m.shards[i].Store(sh)
	}
	sh.mu.Lock()
	sh.settle(i)
	_, had := sh.m[k]
	switch {
	case del && had:
		delete(sh.m, k)
		m.count.Add(-1)
	case !del:
		if sh.m == nil {
			sh.m = map[K]V{}
		}
		sh.m[k] = v
		if !had {
			m.count.Add(1)
		}
	}
	if del && !had {
		sh.mu.Unlock()
		return
	}
	if sh.dirty == nil {
		sh.dirty = map[K]struct{}{}
	}
	if _, ok := sh.dirty[k]; !ok {
		sh.dirty[k] = struct{}{}
		m.changed++
	}
	sh.mu.Unlock()
	if m.changed == 1 && !m.needBase { // it was clean: a Save now has it to write
		m.db.Load().markDirty(m)
	}
}

// settle copies what the cuts waiting on shard i need of it, before a
// writer changes it. Call with the shard's lock held.
func (sh *shard[K, V]) settle(i int) {
	for _, f := range sh.freezes {
		f.copyShard(i, sh)
	}
	sh.freezes = nil
}

// copyShard copies what f needs of shard i, once. Call with the shard's
// lock held.
func (f *freeze[K, V]) copyShard(i int, sh *shard[K, V]) {
	if f.done[i] {
		return
	}
	f.done[i] = true
	var c shardCopy[K, V]
	if f.full {
		c.keys, c.vals = make([]K, 0, len(sh.m)), make([]V, 0, len(sh.m))
		for k, v := range sh.m {
			c.keys, c.vals = append(c.keys, k), append(c.vals, v)
		}
	} else {
		for k := range f.keys[i] {
			if v, ok := sh.m[k]; ok {
				c.keys, c.vals = append(c.keys, k), append(c.vals, v)
			} else {
				c.dels = append(c.dels, k)
			}
		}
	}
	f.got[i] = c
}

// take returns what f holds of shard i, copying it first if no writer
// did, and lets go of it.
func (m *Map[K, V]) take(f *freeze[K, V], i int) shardCopy[K, V] {
	if sh := m.shards[i].Load(); sh != nil {
		sh.mu.Lock()
		f.copyShard(i, sh)
		sh.freezes = slices.DeleteFunc(sh.freezes, func(x *freeze[K, V]) bool { return x == f })
		sh.mu.Unlock()
	}
	got := f.got[i]
	f.got[i] = shardCopy[K, V]{}
	return got
}

// cut makes a freeze of the map as it is now: whole, or the keys changed
// since the last cut of a save. A save's cut takes the changed keys with
// it (a whole one writes them too); a view's (All) leaves them. Call with
// the cut lock held (writers excluded).
func (m *Map[K, V]) cut(full, save bool) *freeze[K, V] {
	f := &freeze[K, V]{full: full, count: m.count.Load()}
	for i := range m.shards {
		sh := m.shards[i].Load()
		if sh == nil {
			f.done[i] = true
			continue
		}
		sh.mu.Lock()
		if save {
			f.keys[i], sh.dirty = sh.dirty, nil
		}
		if full {
			f.keys[i] = nil
		}
		if full || len(f.keys[i]) > 0 {
			sh.freezes = append(sh.freezes, f)
		} else {
			f.done[i] = true
		}
		sh.mu.Unlock()
	}
	return f
}

// release stops f from holding any shard it did not copy, and drops
// what it copied.
func (m *Map[K, V]) release(f *freeze[K, V]) {
	for i := range m.shards {
		if sh := m.shards[i].Load(); sh != nil {
			sh.mu.Lock()
			sh.freezes = slices.DeleteFunc(sh.freezes, func(x *freeze[K, V]) bool { return x == f })
			sh.mu.Unlock()
		}
		f.got[i] = shardCopy[K, V]{}
	}
}

// lockCut takes the cut lock of the map's DB.
func (m *Map[K, V]) lockCut() *locks { return lock(&m.lk, cutLock) }

// All returns the entries as they were at one instant: the iteration
// sees none of the changes made after All's first step, whatever writers
// do meanwhile (they copy a shard before changing it, while it is not
// read yet). The loop may call any method of the map. Order is
// unspecified.
func (m *Map[K, V]) All() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		l := m.lockCut()
		f := m.cut(true, false)
		l.cmu.Unlock()
		defer m.release(f)
		for i := range m.shards {
			c := m.take(f, i)
			for k := range c.keys {
				if !yield(c.keys[k], c.vals[k]) {
					return
				}
			}
		}
	}
}

// lockW takes the writers' lock of the map's DB.
func (m *Map[K, V]) lockW() *locks { return lock(&m.lk, writersLock) }

// NewMap registers the map name on db and returns it, holding the entries
// the current snapshot has for it, or none.
//
// K must be of a bool, string or integer kind (a named type of one of
// them is fine), or an array or struct of those, at any depth ([16]byte,
// struct{ Org string; ID int }), whose structs have every field saved
// (exported, not tagged `msgpack:"-"`): keys of other kinds (floats,
// pointers, interfaces, chans, funcs), or holding them, may not load back
// as the keys saved, and are refused with ErrUnsupportedType. A key type
// (or a type inside it) with an encoding or decoding method of its own
// (MarshalBinary, MarshalText, MarshalMsgpack or EncodeMsgpack, or their
// counterparts, as uuid.UUID and netip.Addr have) is taken at NewMap,
// unless it holds a float or an interface, and trusted only key by key:
// a Save that would write a key that does not load back as itself fails
// with ErrUnsupportedType, naming it, and writes nothing.
//
// It fails as NewState does (ErrBadName, with at most MaxMapNameLen
// bytes; ErrDuplicate; ErrUnsupportedType; ErrTypeMismatch, also when the
// name holds a value state; ErrCorrupt). It may be called from
// Atomically's and Update's functions.
func NewMap[K comparable, V any](db *DB, name string) (*Map[K, V], error) {
	if db == nil {
		return nil, fmt.Errorf("instadump: NewMap(%s) on a nil DB", quote(name))
	}
	if err := checkMap[K, V](name); err != nil {
		return nil, err
	}
	m, err := newMap[K, V](name)
	if err != nil {
		return nil, err
	}
	if err := db.register(m); err != nil {
		return nil, err
	}
	return m, nil
}

func checkMap[K comparable, V any](name string) error {
	if err := checkName(name, MaxMapNameLen); err != nil {
		return err
	}
	if err := checkKey(reflect.TypeFor[K]()); err != nil {
		return fmt.Errorf("%w (map %s)", err, quote(name))
	}
	if err := checkType(reflect.TypeFor[map[K]V]()); err != nil {
		return fmt.Errorf("%w (map %s)", err, quote(name))
	}
	return nil
}

// checkKey says whether keys of type k load back as the keys saved:
// those of a bool, string or integer kind do (the codec writes and reads
// them exactly, at every width), and so do arrays and structs made only
// of them, at any depth, when every field of a struct is saved. Others
// may not, so they are refused, whatever the values a program would use.
// The error wraps ErrUnsupportedType, to be followed by the map's name.
func checkKey(k reflect.Type) error {
	why := keyProblem(k, "")
	if why == "" {
		return nil
	}
	return fmt.Errorf("%w: a Map cannot have keys of type %s: %s; use keys of a bool, string or integer kind, or arrays and structs of them (for another key, fmt.Sprint of it, say)", ErrUnsupportedType, k, why)
}

// keyProblem says why keys of type t, found at path inside the key type
// ("" for the key itself), would not load back as the keys saved, or "".
func keyProblem(t reflect.Type, path string) string {
	in := ""
	if path != "" {
		in = fmt.Sprintf("its %s is of type %s: ", path, t)
	}
	switch t.Kind() {
	case reflect.Bool, reflect.String, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return ""
	case reflect.Array, reflect.Struct:
		if codec.CustomCoded(t) && !mayBeUnequal(t) {
			return "" // its own methods make its keys what they are: each is checked at Save (keysLoadBack)
		}
	}
	switch t.Kind() {
	case reflect.Array:
		return keyProblem(t.Elem(), path+"[i]")
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if why := keyProblem(f.Type, path+"."+f.Name); why != "" {
				return why
			}
		}
		lost, err := codec.LostField(t)
		switch {
		case err != nil:
			return in + err.Error()
		case lost != "":
			return fmt.Sprintf("its field %s.%s is not saved (it is unexported, tagged `msgpack:\"-\"`, or shares its name with another field), so keys that differ only there load as one", path, lost)
		}
		return ""
	case reflect.Float32, reflect.Float64:
		return in + "a NaN never equals itself, so its key is never found again, and -0 and 0 are one key"
	case reflect.Pointer:
		return in + "a pointer loads as a new address, never equal to the one saved"
	case reflect.Interface:
		return in + "an interface loads with another dynamic type (int8 for a small int, []interface{} for an array or struct, which cannot be a key)"
	default:
		return in + "values of its kind cannot be stored"
	}
}

// mayBeUnequal says whether a value of t may not equal itself, and so
// never be found again as a key: t holds a float (a NaN) or an interface
// (which may hold one), at any depth, exported or not.
func mayBeUnequal(t reflect.Type) bool {
	return holds(t, func(t reflect.Type) bool {
		switch t.Kind() {
		case reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128, reflect.Interface:
			return true
		}
		return false
	})
}

// keyMethods says whether keys of type t (a type checkKey accepts) are
// encoded or decoded, at any depth, by a method of a type of theirs.
func keyMethods(t reflect.Type) bool { return holds(t, codec.CustomCoded) }

// holds says whether pred is true of t, or of a type t holds: the
// element of an array, a struct's field, at any depth.
func holds(t reflect.Type, pred func(reflect.Type) bool) bool {
	if pred(t) {
		return true
	}
	switch t.Kind() {
	case reflect.Array:
		return holds(t.Elem(), pred)
	case reflect.Struct:
		for i := range t.NumField() {
			if holds(t.Field(i).Type, pred) {
				return true
			}
		}
	}
	return false
}

// unloadable returns the first of keys that would not load back as
// itself, with what it loads back as or why it does not load, or -1 if
// every one does (always, for keys the codec encodes itself). A method
// of the key's type that loses what tells two keys apart (folding case,
// say) would make them one entry on disk, and the map would never load
// again.
func (m *Map[K, V]) unloadable(keys []K) (i int, back K, why error) {
	if !m.keyMethods {
		return -1, back, nil
	}
	var enc []byte
	one := make([]K, 1)
	for i := range keys { // one by one: a method that fails fails for its key alone
		if enc, why = m.roundTrip(enc[:0], keys[i:i+1], one); why != nil || one[0] != keys[i] {
			return i, one[0], why
		}
	}
	return -1, back, nil
}

// roundTrip encodes key[0] into enc and decodes it into back[0], turning a
// panic of a method into an error.
func (m *Map[K, V]) roundTrip(enc []byte, key, back []K) (_ []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("a method of the key's type panicked: %v", r)
		}
	}()
	if enc, err = m.pc.AppendKeys(enc, key); err != nil {
		return enc, err
	}
	_, err = m.pc.DecodeKeys(enc, back)
	return enc, err
}

// keysLoadBack fails the Save (an error wrapping codec.ErrNeverLoads)
// for a key set that would not load back as itself.
func (m *Map[K, V]) keysLoadBack(keys []K) error {
	i, back, why := m.unloadable(keys)
	switch {
	case i < 0:
		return nil
	case why != nil:
		return fmt.Errorf("%w: key %v of map %s would not load back (%v): the encoding or decoding method of its type fails; fix the methods, or delete the key", codec.ErrNeverLoads, keys[i], quote(m.name), why)
	}
	return fmt.Errorf("%w: key %v of map %s would load back as %v, another key: the encoding method of its type loses what tells keys apart; fix the method, or key the map by a type instadump encodes itself", codec.ErrNeverLoads, keys[i], quote(m.name), back)
}

// writableDeletes checks that each key deleted loads back as itself, so
// that its delete can be written. One that does not (its type's method
// fails, or loses what tells keys apart) cannot be written as a delete,
// yet may be on disk (saved before its method changed): the Save fails,
// and the next one writes the map whole, without it (f.rebase).
func (m *Map[K, V]) writableDeletes(f *freeze[K, V], dels []K) error {
	if i, _, _ := m.unloadable(dels); i >= 0 {
		f.rebase.Store(true)
		return fmt.Errorf("%w: the delete of key %v of map %s cannot be written, its type's methods do not give the key back; the next Save writes the map whole, without it", codec.ErrNeverLoads, dels[i], quote(m.name))
	}
	return nil
}

// DefMap declares a map of the default DB, as DefState declares a state:
// it may run before Setup, which loads its saved entries; until then it
// is empty and works in memory. It panics where DefState does, and where
// NewMap would refuse K.
func DefMap[K comparable, V any](name string) *Map[K, V] {
	if err := checkMap[K, V](name); err != nil {
		panic(err.Error())
	}
	m, err := newMap[K, V](name)
	if err != nil {
		panic(err.Error())
	}
	declare(m)
	return m
}
