package instadump

import (
	"fmt"
	"io"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/instadump/instadump/segment"
	"github.com/vmihailenco/msgpack/v5"
)

// State is a named value that instadump saves and restores. Get, Set and
// Update are safe for concurrent use.
//
// Values must not be changed in place after Set, as with atomic.Pointer:
// a map or slice handed to Set, returned by Get or passed to Update's
// function belongs to instadump from then on. To change one, build a new
// value (or a copy) and Set it, or return it from Update. In place, a
// change would race with readers and could reach a snapshot half made.
type State[T any] struct {
	name string
	def  T
	cur  atomic.Pointer[T]
	mu   atomic.Pointer[sync.Mutex] // the writers' lock: its DB's, or unboundMu
	db   atomic.Pointer[DB]

	// Guarded by *mu.
	version uint64   // bumped by every change
	saved   uint64   // the version the last committed snapshot holds
	pending *capture // a Save's capture not yet committed
}

// unboundMu is the writers' lock of DefStates before Setup.
var unboundMu sync.Mutex

// stateBase is what a DB needs of a State of any type.
type stateBase interface {
	stateName() string
	mutex() *sync.Mutex
	bind(db *DB, loaded bool)
	// The following run with the state's lock held.
	capture() *capture
	release(c *capture, committed bool)
	dirty() bool
	install(v any, clean bool)
	// decode runs with no lock held.
	decode(raw []byte) (any, error)
}

func newState[T any](name string, def T) *State[T] {
	s := &State[T]{name: name, def: def}
	d := def
	s.cur.Store(&d)
	s.mu.Store(&unboundMu)
	s.version = 1 // a default was never saved
	return s
}

// Name returns the state's name.
func (s *State[T]) Name() string { return s.name }

// Get returns the current value.
func (s *State[T]) Get() T { return *s.cur.Load() }

// lock takes the state's writers' lock, which changes once, when a
// DefState is bound to the DB by Setup.
func (s *State[T]) lock() *sync.Mutex {
	for {
		mu := s.mu.Load()
		mu.Lock()
		if s.mu.Load() == mu {
			return mu
		}
		mu.Unlock()
	}
}

// barrier makes sure a Save that captured this state but has not encoded
// it yet encodes it now, before a writer may change it in place.
func (s *State[T]) barrier() {
	if s.pending != nil {
		s.pending.run()
	}
}

func (s *State[T]) store(v T) {
	s.cur.Store(&v)
	s.version++
}

// Set replaces the value. It never waits for a Save: a Save that has
// captured the old value goes on encoding the old value.
func (s *State[T]) Set(v T) {
	mu := s.lock()
	defer mu.Unlock()
	s.store(v)
}

// Update replaces the value with fn(current value) atomically and returns
// it. fn runs with the writers of this state's DB held back: keep it
// short, and don't call Set, Update or Atomically of the same DB from it.
func (s *State[T]) Update(fn func(T) T) T {
	mu := s.lock()
	defer mu.Unlock()
	s.barrier()
	v := fn(*s.cur.Load())
	s.store(v)
	return v
}

func (s *State[T]) stateName() string  { return s.name }
func (s *State[T]) mutex() *sync.Mutex { return s.mu.Load() }
func (s *State[T]) dirty() bool        { return s.version != s.saved }

// bind moves the state to db. Its value, unless just loaded from db's
// snapshot, is dirty there: the next Save writes it.
func (s *State[T]) bind(db *DB, loaded bool) {
	if !loaded && s.db.Load() != nil { // a DefState moving to a new DB
		s.version++
	}
	s.pending = nil
	s.db.Store(db)
	s.mu.Store(&db.mu)
}

// install sets a value that decode or SetIn boxed as a *T (a T in an
// interface could not hold a nil interface value).
func (s *State[T]) install(v any, clean bool) {
	s.store(*v.(*T))
	if clean {
		s.saved = s.version
	}
}

func (s *State[T]) capture() *capture {
	if !s.dirty() {
		return nil
	}
	v := s.cur.Load()
	c := &capture{name: s.name, version: s.version, encodeTo: func(w io.Writer) error { return encodeTo(w, *v) }}
	s.pending = c
	return c
}

func (s *State[T]) release(c *capture, committed bool) {
	if s.pending == c {
		s.pending = nil
	}
	if committed && c.version > s.saved {
		s.saved = c.version
	}
}

func (s *State[T]) decode(raw []byte) (any, error) {
	v := new(T)
	if err := msgpack.Unmarshal(raw, v); err != nil {
		return nil, &DecodeError{State: s.name, Stored: storedKind(raw), Wanted: reflect.TypeFor[T]().String(), Err: err}
	}
	return v, nil
}

// capture is one state's value as a Save captured it. The Save encodes
// it straight into the new segment; a writer that must change the state
// before that (Update, GetIn) encodes it first into a buffer, or waits
// for the Save's encoding to end.
type capture struct {
	name     string
	version  uint64
	encodeTo func(io.Writer) error
	once     sync.Once
	buf      *chunkBuf // encoded ahead by a writer
	size     int64     // bytes in buf, fixed once encoded
	streamed bool      // encoded by the Save itself
	err      error
}

// run encodes the value into a buffer, unless it is encoded already.
func (c *capture) run() {
	c.once.Do(func() {
		c.buf = &chunkBuf{}
		c.err = c.encodeTo(c.buf)
		for _, ch := range c.buf.chunks {
			c.size += int64(len(ch))
		}
	})
}

// buffered returns the bytes a writer or the encode-ahead helper
// buffered for the capture. Call it only after run or writeTo.
func (c *capture) buffered() int64 { return c.size }

// writeTo writes the encoded value to w, encoding it straight into w if
// no writer did first.
func (c *capture) writeTo(w io.Writer) error {
	c.once.Do(func() {
		c.streamed = true
		c.err = c.encodeTo(w)
	})
	if c.err == nil && !c.streamed {
		c.err = c.buf.writeTo(w)
	}
	if c.err != nil {
		return fmt.Errorf("instadump: cannot encode state %q: %w", c.name, c.err)
	}
	return nil
}

// chunkBuf is an in-memory buffer of fixed-size chunks from a pool: it
// never copies what it holds to grow, and touches no fresh memory once the
// pool is warm.
type chunkBuf struct{ chunks [][]byte }

const chunkBufSize = 1 << 20

var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, chunkBufSize); return &b }}

func (b *chunkBuf) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if len(b.chunks) == 0 || len(b.chunks[len(b.chunks)-1]) == chunkBufSize {
			b.chunks = append(b.chunks, (*chunkPool.Get().(*[]byte))[:0])
		}
		last := &b.chunks[len(b.chunks)-1]
		k := copy((*last)[len(*last):chunkBufSize], p)
		*last = (*last)[:len(*last)+k]
		p = p[k:]
	}
	return n, nil
}

// writeTo writes the chunks to w and returns them to the pool.
func (b *chunkBuf) writeTo(w io.Writer) error {
	var err error
	for _, c := range b.chunks {
		if err == nil {
			_, err = w.Write(c)
		}
		chunkPool.Put(&c)
	}
	b.chunks = nil
	return err
}

// NewState registers the state name on db and returns it, holding the
// value the current snapshot has for it, or def if it has none.
//
// It fails with ErrDuplicate if name is registered already, with an error
// wrapping ErrTypeMismatch (a *DecodeError) if the stored value does not
// decode into T, and with ErrCorrupt if the stored value is damaged.
// Structs are stored by field name: adding or removing fields is fine.
func NewState[T any](db *DB, name string, def T) (*State[T], error) {
	if db == nil {
		return nil, fmt.Errorf("instadump: NewState(%q) on a nil DB", name)
	}
	s := newState(name, def)
	if err := db.register(s); err != nil {
		return nil, err
	}
	return s, nil
}

func checkName(name string) error {
	if name == "" || len(name) > segment.MaxNameLen {
		return fmt.Errorf("instadump: state name %q must be 1 to %d bytes", name, segment.MaxNameLen)
	}
	return nil
}
