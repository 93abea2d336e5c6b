package instadump

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/instadump/instadump/engine"
)

// DB is an open instadump directory and the states registered on it.
// Its methods are safe for concurrent use.
type DB struct {
	eng  *engine.Engine
	opts options
	log  *slog.Logger

	locks // the writers' lock and the cut lock of every state on the DB

	// Guarded by the cut lock.
	members map[string]member   // registered states; nil while one loads
	sorted  []member            // the registered states, by name
	dirty   map[member]struct{} // states a Save would write
	drops   map[string]uint64   // states the next Save drops, with the number of the Drop call
	dropSeq uint64
	epoch   uint64 // bumped by Reload: a transaction that saw another fails

	saveMu sync.Mutex // serialises Save, Reload, ReloadFrom and Close
	closed atomic.Bool
	auto   *autoSaver
}

// member is what a DB needs of a State or a Map of any type.
type member interface {
	memberName() string
	lockW() *locks
	// With the DB's cut lock held:
	dirty() bool
	capture(eng *engine.Engine, w *engine.Write) *capture // fills in w
	settle(c *capture, committed bool)
	changedInPlace() bool
	install(v any, clean bool, schema uint64)
	bind(db *DB, loaded bool)
	defaultValue() any // what install sets when no snapshot holds it
	// With no lock held: the value of a snapshot, decoded.
	load(eng *engine.Engine, ref engine.Ref) (any, error)
}

// capture is what a Save writes for one state: its engine.Write, whose
// Parts are the jobs', and what settles it.
type capture struct {
	m       member
	jobs    []*job
	one     [1]*job // a State's one job, without a slice of its own
	version uint64  // a State's version captured
	extra   any     // a Map's own
}

// Snapshot describes a saved snapshot.
type Snapshot struct {
	ID     uint64    // 1, 2, 3, ... with no gaps
	Time   time.Time // when it was saved
	States int       // how many states it holds, registered or not
	// Bytes is the size of the segment the Save that made the snapshot
	// wrote: 0 if it wrote none (it only dropped states).
	Bytes int64
}

func toSnapshot(s engine.Snapshot) Snapshot {
	return Snapshot{ID: s.ID, Time: s.Time, States: s.States, Bytes: s.Written}
}

// Recovery says what Open found and did.
type Recovery struct {
	// FellBack is set when the current snapshot (or the manifest) was
	// damaged and Open (WithFallback) loaded snapshot UsedID instead.
	FellBack bool
	Damaged  uint64   // the damaged snapshot; 0 if the manifest, its last record or CURRENT was unreadable
	UsedID   uint64   // the snapshot loaded instead; 0 if none
	Damage   error    // what was wrong
	Broken   []string // files moved aside (renamed NAME.broken), never deleted
	// TornTail describes the end of a save that crashed before its
	// commit, which recovery ignored; nil if none. It is not damage.
	TornTail error
	// DamagedTail describes a last commit record that was written whole
	// and damaged since (it fails its checksum): its snapshot, which may
	// have been acknowledged, could not be loaded. Without WithFallback,
	// Open fails with this error; with it, Open fell back (FellBack) to
	// the snapshot before it and moved aside (Broken) the manifest and
	// the segments only that record may name. Nil if none. It is damage:
	// restore from a backup if that snapshot is needed.
	DamagedTail error
	// Removed lists leftover files recovery deleted: segments of saves
	// that crashed before their commit, old manifests, CURRENT.tmp. The
	// segment of a first save that crashed is moved aside instead
	// (Broken): a damaged manifest can leave the same files.
	Removed []string
}

// Open opens the DB in dir, creating the directory if needed, recovers it
// to its last committed snapshot and takes an exclusive lock on it
// (ErrLocked if another process holds it). Recovery writes (a new
// manifest, CURRENT): on a full filesystem Open fails with an error that
// says so and wraps syscall.ENOSPC (or EDQUOT); WithReadOnly still opens.
func Open(dir string, opts ...Option) (*DB, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case o.retainSet && o.retain < 1:
		return nil, fmt.Errorf("%w: WithRetain(%d) for %s: keep at least 1 snapshot", ErrBadOption, o.retain, dir)
	case o.autoSave < 0:
		return nil, fmt.Errorf("%w: WithAutoSave(%v) for %s: the interval must not be negative", ErrBadOption, o.autoSave, dir)
	case o.readOnly && (o.autoSave > 0 || o.saveOnClose):
		return nil, fmt.Errorf("%w: WithReadOnly with WithAutoSave or WithSaveOnClose for %s: a read-only DB never saves", ErrBadOption, dir)
	}
	log := o.logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The values of the states the program is about to register are read
	// and decompressed ahead, on another core, while it decodes.
	const readAhead = 32 << 20
	eng, err := engine.Open(dir, engine.Options{
		FS: o.fs, Retain: o.retain, Level: o.level, ReadOnly: o.readOnly,
		Fallback: o.fallback, Logger: log, Replica: o.replica, ReadAhead: readAhead,
	})
	if err != nil {
		return nil, err
	}
	db := &DB{eng: eng, opts: o, log: log, members: map[string]member{}, dirty: map[member]struct{}{}, drops: map[string]uint64{}}
	if o.autoSave > 0 && !o.readOnly {
		db.auto = startAutoSave(db, o.autoSave)
	}
	return db, nil
}

// Recovery returns what Open found and did.
func (db *DB) Recovery() Recovery {
	r := db.eng.Report()
	return Recovery{FellBack: r.FellBack, Damaged: r.Damaged, UsedID: r.UsedID, Damage: r.Damage,
		Broken: r.Broken, TornTail: r.TornTail, DamagedTail: r.DamagedTail, Removed: r.Removed}
}

// Dir returns the DB's directory.
func (db *DB) Dir() string { return db.eng.Dir() }

// markDirty notes that m has changes to save. Call with the cut lock
// held.
func (db *DB) markDirty(m member) {
	if db != nil && db.members[m.memberName()] == m {
		db.dirty[m] = struct{}{}
	}
}

// register adds m to db, loading its value from the current snapshot.
func (db *DB) register(m member) error {
	return db.registerAll([]member{m}, false)
}

// registerAll adds ms to db, loading their values from the current
// snapshot, all or nothing: if one fails, none is added and none changes
// in memory; the error names each that failed. With reset, a member that
// has no value in this DB goes back to its default, so nothing carries
// over from a DB it was bound to before.
func (db *DB) registerAll(ms []member, reset bool) error {
	if db.closed.Load() {
		return ErrClosed
	}
	names := make([]string, len(ms))
	fresh := make([]bool, len(ms)) // dropped since the last Save: starts anew
	db.cmu.Lock()
	for i, m := range ms {
		names[i] = m.memberName()
		if _, dup := db.members[names[i]]; dup {
			for _, n := range names[:i] {
				delete(db.members, n)
			}
			db.cmu.Unlock()
			return fmt.Errorf("%w: %s on %s", ErrDuplicate, quote(names[i]), db.Dir())
		}
		db.members[names[i]] = nil // reserved while loading
		_, fresh[i] = db.drops[names[i]]
	}
	db.cmu.Unlock()

	vals, stored := make([]any, len(ms)), make([]bool, len(ms))
	refs, release, _, err := db.eng.Hold(0, names)
	var errs []error
	if err != nil {
		errs = append(errs, fmt.Errorf("%w (loading %s)", err, quoteAll(names)))
	}
	for i, m := range ms {
		if err != nil || refs == nil || fresh[i] || refs[i].Kind == 0 {
			continue
		}
		v, err := m.load(db.eng, refs[i])
		var me *migrationError
		if err != nil && !errors.Is(err, ErrTypeMismatch) && !errors.As(err, &me) { // these name the state already
			err = fmt.Errorf("%w (loading state %s)", err, quote(names[i]))
		}
		vals[i], stored[i] = v, err == nil
		if err != nil {
			errs = append(errs, err)
		}
	}
	if release != nil {
		release()
	}
	if len(errs) > 0 {
		err := errs[0] // one state's error as it is: a *DecodeError stays one
		if len(errs) > 1 {
			err = errors.Join(errs...)
		}
		db.cmu.Lock()
		for _, n := range names {
			delete(db.members, n)
		}
		db.cmu.Unlock()
		return err
	}
	for i, m := range ms {
		old := m.lockW() // a DefState's writers wait while it moves to db
		db.cmu.Lock()
		switch {
		case stored[i]:
			m.install(vals[i], true, refs[i].Schema)
		case reset:
			m.install(m.defaultValue(), false, 0)
		}
		m.bind(db, stored[i])
		db.members[names[i]] = m
		j, _ := slices.BinarySearchFunc(db.sorted, names[i], func(x member, n string) int { return strings.Compare(x.memberName(), n) })
		db.sorted = slices.Insert(db.sorted, j, m)
		if m.dirty() {
			db.dirty[m] = struct{}{}
		}
		db.cmu.Unlock()
		old.wmu.Unlock()
	}
	return nil
}

// Drop removes state name from every later snapshot: the next Save
// writes a snapshot without it, even if nothing else changed. Older
// retained snapshots keep it. The name may be registered again, with its
// default; a Reload or ReloadFrom that then loads the name's value from
// the snapshot undoes the Drop. A registered *State or *Map of that name
// stays usable in memory, but is no longer saved, and fails SetIn and
// GetIn. Drop of a name neither registered nor in the current snapshot
// is ErrNoState.
//
// It may be called from Atomically's and Update's functions.
func (db *DB) Drop(name string) error {
	if db.closed.Load() {
		return ErrClosed
	}
	if db.opts.readOnly {
		return fmt.Errorf("%w: Drop(%s) on %s: open it without WithReadOnly to drop states", ErrReadOnly, quote(name), db.Dir())
	}
	db.cmu.Lock()
	defer db.cmu.Unlock()
	_, onDisk := db.eng.Lookup(0, name) // under the cut lock: a Save's capture sees this drop, or the snapshot it makes
	_, dropped := db.drops[name]
	m, reserved := db.members[name]
	if reserved && m == nil {
		return fmt.Errorf("%w: %s on %s is being registered (a NewState or NewMap of it is loading): drop it once that returns", ErrNoState, quote(name), db.Dir())
	}
	if m == nil && (!onDisk || dropped) {
		return fmt.Errorf("%w: %s is neither registered on %s nor in its current snapshot", ErrNoState, quote(name), db.Dir())
	}
	if m != nil {
		m.bind(nil, true)
		delete(db.members, name)
		delete(db.dirty, m)
		i, _ := slices.BinarySearchFunc(db.sorted, name, func(x member, n string) int { return strings.Compare(x.memberName(), n) })
		db.sorted = slices.Delete(db.sorted, i, i+1)
	}
	db.dropSeq++
	db.drops[name] = db.dropSeq // a Save in flight may write it: the next one drops it
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

// Close stops automatic saving, saves if WithSaveOnClose asks and
// something changed, and closes the DB, releasing its lock. Every later
// call returns an error wrapping ErrClosed, a second Close too (it says
// the DB was closed already); the states keep their values in memory.
//
// It may be called from Atomically's and Update's functions.
func (db *DB) Close() error {
	if db.auto != nil {
		db.auto.stop()
	}
	db.saveMu.Lock()
	defer db.saveMu.Unlock()
	if db.closed.Load() {
		return fmt.Errorf("%w: Close of %s: it was closed already", ErrClosed, db.Dir())
	}
	var err error
	if db.opts.saveOnClose && !db.opts.readOnly && db.needsSave() {
		if _, err = db.save(); err != nil {
			err = fmt.Errorf("instadump: saving on close: %w", err)
		}
	}
	db.closed.Store(true)
	return errors.Join(err, db.eng.Close())
}
