package instadump

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/instadump/instadump/engine"
)

// Save writes one consistent snapshot of every state and returns once it
// is durable. Only the states changed since the last snapshot are
// written (for a Map, only its changed keys); the rest, and states on
// disk that this run never registered, are kept as they are. Writers are
// held back only while Save captures what changed; encoding, compression
// and I/O run after. Saves are serialised.
//
// When nothing changed and nothing was dropped, Save writes nothing and
// returns the current snapshot, as it was. It then also looks for values
// changed in place (which instadump cannot see) and logs a warning naming
// them.
//
// It may be called from Atomically's and Update's functions: the snapshot
// then holds none of the running transaction's changes.
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
		return Snapshot{}, fmt.Errorf("%w: Save on %s: open it without WithReadOnly to save", ErrReadOnly, db.Dir())
	}
	// The cut: what each changed state holds now.
	db.cmu.Lock()
	caps := make([]*capture, 0, len(db.dirty))
	writes := make([]engine.Write, 0, len(db.dirty)) // writes[i] is caps[i]'s
	dirty := make([]member, 0, len(db.dirty))
	for m := range db.dirty {
		dirty = append(dirty, m)
	}
	slices.SortFunc(dirty, func(a, b member) int { return strings.Compare(a.memberName(), b.memberName()) })
	for _, m := range dirty {
		writes = append(writes, engine.Write{})
		if c := m.capture(db.eng, &writes[len(writes)-1]); c != nil {
			c.m = m
			caps = append(caps, c)
		} else {
			writes = writes[:len(writes)-1]
			delete(db.dirty, m) // changed, then set back as it was saved
		}
	}
	// The drops: saves are serialised, so the current snapshot is the one
	// this commit applies to. A state it does not hold has nothing to drop;
	// one registered anew since its drop is replaced by what it writes.
	consumed := maps.Clone(db.drops)
	drops := make([]string, 0, len(db.drops))
	for n := range db.drops {
		_, written := slices.BinarySearchFunc(writes, n, func(w engine.Write, n string) int { return strings.Compare(w.Name, n) })
		if _, onDisk := db.eng.Lookup(0, n); onDisk && !written {
			drops = append(drops, n)
		}
	}
	if len(caps) == 0 && len(drops) == 0 {
		db.warnInPlace()
	}
	db.cmu.Unlock()

	jobs := make([]*job, 0, len(caps))
	for _, c := range caps {
		jobs = append(jobs, c.jobs...)
	}
	ahead := startEncodeAhead(jobs)
	parts := ahead.parts()
	for i, c := range caps {
		writes[i].Parts, parts = parts[:len(c.jobs):len(c.jobs)], parts[len(c.jobs):]
	}
	snap, err := db.eng.Commit(writes, drops)
	ahead.stop()

	db.cmu.Lock()
	for _, c := range caps {
		c.m.settle(c, err == nil)
		if !c.m.dirty() {
			delete(db.dirty, c.m)
		}
	}
	if err == nil {
		for n, seq := range consumed {
			if db.drops[n] == seq { // else dropped again since the cut
				delete(db.drops, n)
			}
		}
	}
	db.cmu.Unlock()
	if err != nil {
		return Snapshot{}, err
	}
	return toSnapshot(snap), nil
}

// warnInPlace logs the states whose value seems changed in place since it
// was set. Call with the cut lock held.
func (db *DB) warnInPlace() {
	for _, m := range db.sorted {
		if m.changedInPlace() {
			db.log.Warn("instadump: a state's value changed in place, which instadump cannot see and does not save: build a new value and Set it (or use a Map)", "state", m.memberName(), "dir", db.Dir())
		}
	}
}

// needsSave says whether a Save would write anything.
func (db *DB) needsSave() bool {
	if _, ok := db.eng.Current(); !ok {
		return true
	}
	db.cmu.Lock()
	defer db.cmu.Unlock()
	return len(db.dirty) > 0 || len(db.drops) > 0
}

// Reload sets every registered state back to its value in the last
// snapshot. All or nothing: if a registered state has no value there
// (ErrNotSaved), or a value cannot be read or decoded, nothing changes.
// With no snapshot at all it returns ErrNoSnapshot.
//
// The last snapshot is the last this DB knows of: on a DB opened
// WithReadOnly, the last at Open, not one another process saved since
// (see WithReadOnly).
//
// It may be called from Atomically's and Update's functions; a
// transaction running meanwhile then fails with ErrReloaded (nothing of
// it is applied), and an Update running meanwhile keeps nothing, since
// what they read was reloaded under them.
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
	return db.reloadFrom(cur.ID, true)
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
	cur, _ := db.eng.Current()
	return db.reloadFrom(id, id == cur.ID)
}

func (db *DB) reloadFrom(id uint64, isCurrent bool) error {
	db.cmu.Lock()
	members := slices.Clone(db.sorted) // used after the lock is let go
	db.cmu.Unlock()
	names := make([]string, len(members))
	for i, m := range members {
		names[i] = m.memberName()
	}
	refs, release, ok, err := db.eng.Hold(id, names)
	if !ok {
		var ids []string
		for _, s := range db.eng.Snapshots() {
			ids = append(ids, fmt.Sprint(s.ID))
		}
		return fmt.Errorf("%w: snapshot %d is not retained in %s (retained: %s)", ErrNoSnapshot, id, db.Dir(), strings.Join(ids, ", "))
	}
	if err != nil {
		return err
	}
	defer release()
	var missing []string
	for i, r := range refs {
		if r.Kind == 0 {
			missing = append(missing, quote(names[i]))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: snapshot %d of %s has no value for %s; nothing was reloaded", ErrNotSaved, id, db.Dir(), strings.Join(missing, ", "))
	}
	vals := make([]any, len(members))
	for i, m := range members {
		if vals[i], err = m.load(db.eng, refs[i]); err != nil {
			return fmt.Errorf("%w (reloading snapshot %d: nothing was reloaded)", err, id)
		}
	}
	// A running transaction (perhaps the caller's own) must not apply
	// what it computed from values reloaded under it.
	if db.wmu.TryLock() {
		defer db.wmu.Unlock()
	}
	db.cmu.Lock()
	defer db.cmu.Unlock()
	db.epoch++
	for i, m := range members {
		if db.members[names[i]] == m {
			m.install(vals[i], isCurrent, refs[i].Schema)
			delete(db.drops, names[i]) // its value is back: a Drop of it since is undone
		}
	}
	return nil
}
