package instadump

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/instadump/instadump/engine"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

// DB is an open instadump directory and the states registered on it.
// Its methods are safe for concurrent use.
type DB struct {
	eng  *engine.Engine
	opts options
	log  *slog.Logger

	mu     sync.Mutex // held by writers, transactions and a Save's capture
	states map[string]stateBase
	sorted []stateBase // the registered states, by name

	saveMu sync.Mutex // serialises Save, Reload, ReloadFrom and Close
	closed atomic.Bool

	autoStop chan struct{}
	autoDone chan struct{}
	stopOnce sync.Once
	autoMu   sync.Mutex
	autoErr  error
}

// Snapshot describes a saved snapshot.
type Snapshot struct {
	ID     uint64    // 1, 2, 3, ... with no gaps
	Time   time.Time // when it was saved
	States int       // how many states it holds, registered or not
	Bytes  int64     // bytes this snapshot wrote (0 when nothing changed)
}

func toSnapshot(s manifest.Snapshot) Snapshot {
	return Snapshot{ID: s.ID, Time: s.Time, States: len(s.States), Bytes: s.Written}
}

// Recovery says what Open found and did.
type Recovery struct {
	// FellBack is set when the current snapshot was damaged and Open
	// (WithFallback) loaded snapshot UsedID instead of Damaged.
	FellBack bool
	Damaged  uint64
	UsedID   uint64
	Damage   error    // what was wrong
	Broken   []string // damaged files moved aside
	// TornTail describes the end of a save that crashed before its
	// commit, which recovery ignored; nil if none.
	TornTail error
	// Removed lists leftover files recovery deleted.
	Removed []string
}

// Open opens the DB in dir, creating the directory if needed, recovers it
// to its last committed snapshot and takes an exclusive lock on it
// (ErrLocked if another process holds it).
func Open(dir string, opts ...Option) (*DB, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	eng, err := engine.Open(dir, engine.Options{
		FS: o.fs, Retain: o.retain, Level: o.level, ReadOnly: o.readOnly,
		Fallback: o.fallback, Logger: o.logger,
	})
	if err != nil {
		return nil, err
	}
	db := &DB{eng: eng, opts: o, log: o.logger, states: map[string]stateBase{}}
	if o.autoSave > 0 {
		db.autoStop, db.autoDone = make(chan struct{}), make(chan struct{})
		go db.autoSaveLoop(o.autoSave)
	}
	return db, nil
}

// Recovery returns what Open found and did.
func (db *DB) Recovery() Recovery {
	r := db.eng.Report()
	return Recovery{FellBack: r.FellBack, Damaged: r.Damaged, UsedID: r.UsedID, Damage: r.Damage,
		Broken: r.Broken, TornTail: r.TornTail, Removed: r.Removed}
}

// Dir returns the DB's directory.
func (db *DB) Dir() string { return db.eng.Dir() }

// register adds s to db, loading its value from the current snapshot.
func (db *DB) register(s stateBase) error {
	name := s.stateName()
	if err := checkName(name); err != nil {
		return err
	}
	if db.closed.Load() {
		return ErrClosed
	}
	db.mu.Lock()
	if _, dup := db.states[name]; dup {
		db.mu.Unlock()
		return fmt.Errorf("%w: %q on %s", ErrDuplicate, name, db.Dir())
	}
	db.states[name] = nil // reserved while loading
	db.mu.Unlock()
	var v any
	var err error
	cur, ok := db.eng.Current()
	ref, stored := cur.States[name]
	if ok && stored {
		var raw []byte
		if raw, err = db.eng.Read(ref); err == nil {
			v, err = s.decode(raw)
		}
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if err != nil {
		delete(db.states, name)
		return fmt.Errorf("instadump: loading state %q: %w", name, err)
	}
	old := s.mutex()
	old.Lock() // a DefState's writers wait while it moves to db
	if stored {
		s.install(v, true)
	}
	s.bind(db, stored)
	old.Unlock()
	db.states[name] = s
	i, _ := slices.BinarySearchFunc(db.sorted, name, func(x stateBase, n string) int { return strings.Compare(x.stateName(), n) })
	db.sorted = slices.Insert(db.sorted, i, s)
	return nil
}

// registered returns the registered states, sorted by name. Call with
// db.mu held; don't modify the slice.
func (db *DB) registered() []stateBase { return db.sorted }

// Save writes one consistent snapshot of every state and returns once it
// is durable. Only the states changed since the last snapshot are
// written; the rest, and states on disk that this run never registered,
// are kept as they are. Writers are held back only while Save captures
// which states changed; encoding, compression and I/O run after, and a
// writer that gets to a captured state first encodes it itself. Saves are
// serialised. When nothing changed, Save returns the current snapshot.
func (db *DB) Save() (Snapshot, error) {
	db.saveMu.Lock()
	defer db.saveMu.Unlock()
	if db.closed.Load() {
		return Snapshot{}, ErrClosed
	}
	return db.save()
}

func (db *DB) save() (Snapshot, error) {
	if db.opts.readOnly {
		return Snapshot{}, fmt.Errorf("instadump: Save on %s: %w", db.Dir(), ErrReadOnly)
	}
	db.mu.Lock()
	var caps []*capture
	var owners []stateBase
	for _, s := range db.registered() {
		if c := s.capture(); c != nil {
			caps, owners = append(caps, c), append(owners, s)
		}
	}
	db.mu.Unlock()

	names := make([]string, len(caps))
	for i, c := range caps {
		names[i] = c.name
	}
	snap, err := db.eng.CommitFunc(names, func(w *segment.Writer) error {
		ahead := startEncodeAhead(caps)
		defer ahead.stop()
		for i, c := range caps {
			vw, err := w.Value(c.name)
			if err != nil {
				return err
			}
			err = c.writeTo(vw)
			ahead.consumed(i)
			if cerr := vw.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	db.mu.Lock()
	for i, c := range caps {
		owners[i].release(c, err == nil)
	}
	db.mu.Unlock()
	if err != nil {
		return Snapshot{}, err
	}
	return toSnapshot(snap), nil
}

// aheadBudget bounds the bytes encoded ahead of the segment writer.
const aheadBudget = 32 << 20

// encodeAhead encodes captures into buffers on another core while the
// Save streams the current one into the segment, staying at most
// aheadBudget bytes ahead. The Save then copies the buffered ones.
type encodeAhead struct {
	caps     []*capture
	mu       sync.Mutex
	cond     *sync.Cond
	buffered int64  // bytes encoded ahead and not yet consumed
	counted  []bool // captures whose bytes buffered holds
	at       int    // the capture the Save is at
	quit     bool
	done     chan struct{}
}

func startEncodeAhead(caps []*capture) *encodeAhead {
	a := &encodeAhead{caps: caps, counted: make([]bool, len(caps)), done: make(chan struct{})}
	a.cond = sync.NewCond(&a.mu)
	if len(caps) < 2 || runtime.GOMAXPROCS(0) < 2 {
		close(a.done)
		return a
	}
	go func() {
		defer close(a.done)
		for i := 1; i < len(caps); i++ {
			a.mu.Lock()
			for !a.quit && i > a.at+1 && a.buffered > aheadBudget {
				a.cond.Wait()
			}
			quit, behind := a.quit, i <= a.at
			a.mu.Unlock()
			if quit {
				return
			}
			if behind {
				continue // the Save got there first
			}
			caps[i].run()
			a.mu.Lock()
			if i > a.at { // not consumed yet
				a.buffered += caps[i].buffered()
				a.counted[i] = true
			}
			a.mu.Unlock()
		}
	}()
	return a
}

// consumed says the Save has written capture i.
func (a *encodeAhead) consumed(i int) {
	a.mu.Lock()
	a.at = i
	if a.counted[i] {
		a.buffered -= a.caps[i].buffered()
	}
	a.cond.Broadcast()
	a.mu.Unlock()
}

func (a *encodeAhead) stop() {
	a.mu.Lock()
	a.quit = true
	a.cond.Broadcast()
	a.mu.Unlock()
	<-a.done
}

// Reload sets every registered state back to its value in the last
// snapshot. All or nothing: if a registered state has no value there
// (ErrNotSaved), or a value cannot be read or decoded, nothing changes.
// With no snapshot at all it returns ErrNoSnapshot.
func (db *DB) Reload() error {
	db.saveMu.Lock()
	defer db.saveMu.Unlock()
	if db.closed.Load() {
		return ErrClosed
	}
	cur, ok := db.eng.Current()
	if !ok {
		return fmt.Errorf("%w: %s has never been saved", ErrNoSnapshot, db.Dir())
	}
	return db.reloadFrom(cur, true)
}

// ReloadFrom sets every registered state back to its value in retained
// snapshot id, all or nothing, as Reload does. ErrNoSnapshot if id is not
// retained. The next Save writes the reloaded values as a new snapshot.
func (db *DB) ReloadFrom(id uint64) error {
	db.saveMu.Lock()
	defer db.saveMu.Unlock()
	if db.closed.Load() {
		return ErrClosed
	}
	snap, ok := db.eng.Snapshot(id)
	if !ok {
		var ids []string
		for _, s := range db.eng.Snapshots() {
			ids = append(ids, fmt.Sprint(s.ID))
		}
		return fmt.Errorf("%w: snapshot %d is not retained in %s (retained: %s)", ErrNoSnapshot, id, db.Dir(), strings.Join(ids, ", "))
	}
	cur, _ := db.eng.Current()
	return db.reloadFrom(snap, snap.ID == cur.ID)
}

func (db *DB) reloadFrom(snap manifest.Snapshot, isCurrent bool) error {
	db.mu.Lock()
	states := slices.Clone(db.registered()) // used after the lock is let go
	db.mu.Unlock()
	var missing []string
	for _, s := range states {
		if _, ok := snap.States[s.stateName()]; !ok {
			missing = append(missing, s.stateName())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: snapshot %d of %s has no value for %s; nothing was reloaded", ErrNotSaved, snap.ID, db.Dir(), strings.Join(missing, ", "))
	}
	vals := make([]any, len(states))
	for i, s := range states {
		raw, err := db.eng.Read(snap.States[s.stateName()])
		if err == nil {
			vals[i], err = s.decode(raw)
		}
		if err != nil {
			return fmt.Errorf("instadump: reloading state %q from snapshot %d (nothing was reloaded): %w", s.stateName(), snap.ID, err)
		}
	}
	db.mu.Lock()
	for i, s := range states {
		s.install(vals[i], isCurrent)
	}
	db.mu.Unlock()
	return nil
}

// Snapshots returns the retained snapshots, oldest first.
func (db *DB) Snapshots() ([]Snapshot, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	var out []Snapshot
	for _, s := range db.eng.Snapshots() {
		out = append(out, toSnapshot(s))
	}
	return out, nil
}

// dirty says whether a Save would write anything.
func (db *DB) dirty() bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	if _, ok := db.eng.Current(); !ok {
		return true
	}
	for _, s := range db.registered() {
		if s.dirty() {
			return true
		}
	}
	return false
}

func (db *DB) autoSaveLoop(every time.Duration) {
	defer close(db.autoDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-db.autoStop:
			return
		case <-t.C:
		}
		db.saveMu.Lock()
		if !db.closed.Load() && db.dirty() {
			_, err := db.save()
			db.autoMu.Lock()
			db.autoErr = err
			db.autoMu.Unlock()
			if err != nil {
				db.log.Error("instadump: automatic save failed", "dir", db.Dir(), "err", err)
			}
		}
		db.saveMu.Unlock()
	}
}

// AutoSaveErr returns the error of the last automatic save (WithAutoSave),
// or nil if it succeeded or none ran.
func (db *DB) AutoSaveErr() error {
	db.autoMu.Lock()
	defer db.autoMu.Unlock()
	return db.autoErr
}

// Close stops automatic saving, saves if WithSaveOnClose asks and
// something changed, and closes the DB, releasing its lock. Every later
// call returns ErrClosed; the states keep their values in memory.
func (db *DB) Close() error {
	if db.autoStop != nil {
		db.stopOnce.Do(func() { close(db.autoStop) })
		<-db.autoDone
	}
	db.saveMu.Lock()
	defer db.saveMu.Unlock()
	if db.closed.Load() {
		return ErrClosed
	}
	var err error
	if db.opts.saveOnClose && !db.opts.readOnly && db.dirty() {
		if _, err = db.save(); err != nil {
			err = fmt.Errorf("instadump: saving on close: %w", err)
		}
	}
	db.closed.Store(true)
	return errors.Join(err, db.eng.Close())
}
