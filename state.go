package instadump

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/instadump/instadump/engine"
)

// State is a named value that instadump saves and restores. Its methods
// are safe for concurrent use.
//
// Values must not be changed in place after Set, as with atomic.Pointer:
// a map or slice handed to Set, returned by Get or passed to Update's
// function belongs to instadump from then on. To change one, build a new
// value (or a copy) and Set it, or return it from Update. Changed in
// place, it would race with a Save encoding it, which may then save half
// of the change or crash on a map being written; Save logs a warning when
// it notices (a map or slice whose length changed with no Set). For a big
// map changed a key at a time, use Map.
//
// A State that was dropped (DB.Drop) or whose DB was closed keeps working
// in memory: Get, Set and Update go on, and nothing is saved any more.
type State[T any] struct {
	name string
	def  T
	cfg  stateConfig[T]
	cur  atomic.Pointer[T]
	lk   atomic.Pointer[locks] // its DB's, or its own while unbound
	db   atomic.Pointer[DB]    // nil when unbound

	// Guarded by lk's cut lock.
	version uint64 // bumped by every change
	saved   uint64 // the version the last committed snapshot holds
	pending *job   // a Save's capture not yet committed
	schema  uint64 // the schema version on disk
	shape   shape  // of the value as last Set, for the in-place check
}

// locks are the writers' and the cut lock of a DB (or of unbound states).
type locks struct {
	// wmu is held by Set, Update and Atomically while they run: writers
	// run one at a time.
	wmu sync.Mutex
	// cmu is the cut: held for every store, and by a Save's capture, so
	// a snapshot holds every change whole or not at all.
	cmu sync.Mutex
}

// lock takes one of the locks lk points to (pick chooses which) and
// returns the locks held. lk changes when a DefState is bound by Setup or
// a state is dropped; lock retries until the locks it holds are still
// lk's.
func lock(lk *atomic.Pointer[locks], pick func(*locks) *sync.Mutex) *locks {
	for {
		l := lk.Load()
		pick(l).Lock()
		if lk.Load() == l {
			return l
		}
		pick(l).Unlock()
	}
}

func writersLock(l *locks) *sync.Mutex { return &l.wmu }
func cutLock(l *locks) *sync.Mutex     { return &l.cmu }

func newState[T any](name string, def T, opts []StateOption[T]) (*State[T], error) {
	s := &State[T]{name: name, def: def}
	for _, o := range opts {
		o.applyState(&s.cfg)
	}
	if err := s.cfg.check(name); err != nil {
		return nil, err
	}
	d := def
	s.cur.Store(&d)
	s.lk.Store(new(locks)) // its own until bound: registering it waits for no one else
	s.version = 1          // a default was never saved
	s.shape = shapeOf(&d)
	return s, nil
}

// Name returns the state's name.
func (s *State[T]) Name() string { return s.name }

// Get returns the current value.
func (s *State[T]) Get() T { return *s.cur.Load() }

// lockW takes the writers' lock of the state's DB.
func (s *State[T]) lockW() *locks { return lock(&s.lk, writersLock) }

// store sets the value. Call with the cut lock held.
func (s *State[T]) store(v *T) {
	s.cur.Store(v)
	s.version++
	s.shape = shapeOf(v)
	if s.version == s.saved+1 { // it was clean: a Save now has it to write
		s.db.Load().markDirty(s)
	}
}

// Set replaces the value. It never waits for a Save: a Save that has
// captured the old value goes on encoding the old value. It waits for a
// running Update or Atomically of the same DB, so it must not be called
// from their functions (use SetIn in Atomically).
func (s *State[T]) Set(v T) {
	l := s.lockW()
	l.cmu.Lock()
	s.store(&v)
	l.cmu.Unlock()
	l.wmu.Unlock()
}

// Update replaces the value with fn(current value) atomically and returns
// it. fn runs with the other writers of the state's DB (Set, Update,
// Atomically) held back: keep it short, and call none of them from it;
// Save, Reload and the readers are fine (Setup is not, in the Update of
// a DefState before Setup: it waits for the Update to bind the state).
// If fn panics, nothing changes and the panic goes on. A Reload or
// ReloadFrom while fn runs (from fn or not) comes after the Update: the value fn returns is returned but
// not kept, and the state holds the reloaded value.
func (s *State[T]) Update(fn func(T) T) T {
	l := s.lockW()
	defer l.wmu.Unlock()
	db, epoch := s.barrier(l)
	v := fn(*s.cur.Load())
	l.cmu.Lock()
	if db == nil || db.epoch == epoch {
		s.store(&v)
	}
	l.cmu.Unlock()
	return v
}

// barrier makes sure a Save that captured the state but has not encoded
// it yet encodes it now, before a function that may (wrongly) change the
// value in place gets it. It returns the state's DB, if bound, and the
// DB's reload epoch.
func (s *State[T]) barrier(l *locks) (db *DB, epoch uint64) {
	l.cmu.Lock()
	p := s.pending
	if db = s.db.Load(); db != nil {
		epoch = db.epoch
	}
	l.cmu.Unlock()
	if p != nil {
		p.run()
	}
	return db, epoch
}

func (s *State[T]) memberName() string { return s.name }

// dirty says whether a Save would write the state. Call with the cut
// lock held.
func (s *State[T]) dirty() bool { return s.version != s.saved }

// capture returns what a Save writes for the state, or nil if it is
// clean. Call with the cut lock held.
func (s *State[T]) capture(_ *engine.Engine, w *engine.Write) *capture {
	if !s.dirty() {
		return nil
	}
	v := s.cur.Load()
	j := newJob(s.name, func(w io.Writer) error { return encodeValue(w, v) })
	s.pending = j
	*w = engine.Write{Name: s.name, Kind: engine.ValueState, Schema: s.cfg.schema}
	c := &capture{one: [1]*job{j}, version: s.version}
	c.jobs = c.one[:]
	return c
}

// settle ends a Save's capture. Call with the cut lock held.
func (s *State[T]) settle(c *capture, committed bool) {
	if s.pending == c.jobs[0] {
		s.pending = nil
	}
	if committed {
		s.saved = max(s.saved, c.version)
		s.schema = s.cfg.schema
	}
}

// changedInPlace says whether the value seems changed in place since it
// was Set. Call with the cut lock held.
func (s *State[T]) changedInPlace() bool { return !s.dirty() && s.shape != shapeOf(s.cur.Load()) }

// load decodes the state's value from ref, migrating it if it was
// stored in an older schema.
func (s *State[T]) load(eng *engine.Engine, ref engine.Ref) (any, error) {
	if ref.Kind != engine.ValueState {
		return nil, &DecodeError{State: s.name, Stored: ref.Kind.String(), Wanted: reflect.TypeFor[T]().String(),
			Err: errors.New("it was saved with NewMap, not NewState"), todo: "register it with NewMap, or Drop it"}
	}
	raw, err := eng.Read(ref.Value)
	if err != nil {
		return nil, err
	}
	return s.cfg.decode(s.name, raw, ref.Schema)
}

// install sets a value that load or SetIn boxed as a *T. clean says it
// is what a snapshot holds in schema version schema: then it is not
// written again, unless a migration changed it. Call with the cut lock
// held.
func (s *State[T]) install(v any, clean bool, schema uint64) {
	s.store(v.(*T))
	if clean && schema == s.cfg.schema {
		s.saved, s.schema = s.version, schema
	}
}

// bind moves the state to db, holding its old writers' lock, with db's
// cut lock held. A loaded value was just installed; without one, the
// value is dirty on db: the next Save writes it. With db nil (Drop) the
// state keeps its locks and leaves its DB: it is never captured again.
func (s *State[T]) bind(db *DB, loaded bool) {
	s.pending = nil
	s.db.Store(db)
	if db == nil {
		return
	}
	if !loaded {
		s.version++
		s.saved = 0
	}
	s.lk.Store(&db.locks)
}

// NewState registers the state name on db and returns it, holding the
// value the current snapshot has for it, or def if it has none.
//
// It fails with ErrBadName for a name that is not 1 to MaxNameLen bytes of
// UTF-8 without control characters, ErrDuplicate if the name is
// registered already, ErrUnsupportedType if T cannot be stored (a chan, a
// func, ...), ErrTypeMismatch (a *DecodeError) if the stored value does
// not decode into T and no migration applies, and ErrCorrupt if the
// stored value is damaged. Structs are stored by field name: adding or
// removing fields is fine; to rename a field, tag the new one with
// msgpack:"new,alias:old"; to change a type, give a migration.
//
// It may be called from Atomically's and Update's functions.
func NewState[T any](db *DB, name string, def T, opts ...StateOption[T]) (*State[T], error) {
	if db == nil {
		return nil, fmt.Errorf("instadump: NewState(%s) on a nil DB", quote(name))
	}
	if err := checkName(name, MaxNameLen); err != nil {
		return nil, err
	}
	if err := checkType(reflect.TypeFor[T]()); err != nil {
		return nil, fmt.Errorf("%w (state %s)", err, quote(name))
	}
	s, err := newState(name, def, opts)
	if err != nil {
		return nil, err
	}
	if err := db.register(s); err != nil {
		return nil, err
	}
	return s, nil
}

// shape is what a cheap look at a value tells of it: for a map or slice
// its length (and a slice's array), to notice a change in place.
type shape struct {
	len int
	ptr uintptr
}

func shapeOf[T any](v *T) shape {
	rv := reflect.ValueOf(v).Elem()
	switch rv.Kind() {
	case reflect.Map:
		return shape{len: rv.Len()}
	case reflect.Slice:
		return shape{len: rv.Len(), ptr: uintptr(rv.UnsafePointer())}
	}
	return shape{}
}

func (s *State[T]) defaultValue() any {
	d := s.def
	return &d
}
