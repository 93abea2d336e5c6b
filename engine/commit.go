package engine

import (
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

// A Write is what a commit writes for one state: a value state's new
// value, or a map state's new base (in parts) or one delta on its chain.
// The engine stores the bytes each io.WriterTo writes as they are; what
// they mean is the business of the layer above.
type Write struct {
	Name    string
	Kind    Kind          // ValueState or MapState
	Parts   []io.WriterTo // ValueState: the value. MapState: the base's parts, or the delta
	Delta   bool          // MapState: Parts holds one delta on the state's current chain
	Entries int64         // MapState: entries in the map after this write
	Schema  uint64        // the schema version of what is written
}

// entryName is the name in the segment of part i of state name's write
// in snapshot id. A value's entry has the state's name; a map's carry a
// NUL, which no state name holds.
func entryName(name string, kind Kind, delta bool, i int, id uint64) string {
	switch {
	case kind == ValueState:
		return name
	case delta:
		return fmt.Sprintf("%s\x00d%d", name, id)
	}
	return fmt.Sprintf("%s\x00b%d", name, i)
}

// Commit makes a new snapshot: the current one with writes applied and
// the states in drops removed. States in neither keep their value,
// whether or not anyone registered them. It returns once the snapshot is
// durable. With nothing to write or drop it returns the current snapshot
// (if there is one) and writes nothing. Commits are serialised.
//
// The steps, in this order (the order is the guarantee):
//
//  1. Write the values to a new segment; fsync it; fsync the directory,
//     so that its name is durable before anything points at it. A
//     failure abandons the segment and leaves the DB as it was.
//  2. Append the commit record to the manifest and fsync it: the commit
//     point. A failure here is sticky: the manifest's state is unknown.
//  3. Install the snapshot: it is current, and retention drops the
//     oldest.
//  4. Delete the segments no retained snapshot uses; roll the manifest
//     over when it has grown past its limit. A crash here leaves
//     garbage, never damage.
func (e *Engine) Commit(writes []Write, drops []string) (Snapshot, error) {
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	switch {
	case e.isClosed():
		return Snapshot{}, errs.ErrClosed
	case e.opts.ReadOnly:
		return Snapshot{}, errs.ErrReadOnly
	case e.failed != nil:
		return Snapshot{}, e.failed
	}
	e.stopReadAhead() // the loads it serves are over
	e.mu.Lock()
	var prev *snap
	if len(e.snaps) > 0 {
		prev = e.snaps[len(e.snaps)-1]
	}
	next := &snap{Snapshot: Snapshot{ID: 1, Time: time.Now().UTC()}}
	if prev != nil {
		next.ID = prev.ID + 1
	}
	if prev != nil && len(writes) == 0 && len(drops) == 0 {
		e.mu.Unlock()
		return prev.Snapshot, nil // nothing to do, not even a compaction that is due
	}
	plan, err := e.plan(next.ID, writes, drops)
	e.mu.Unlock()
	if err != nil {
		return Snapshot{}, err
	}

	// 1. The segment.
	var r *segReader
	if len(plan.values) > 0 {
		if r, err = e.writeSegment(e.nextSeg, plan.values); err != nil {
			return Snapshot{}, err
		}
		e.nextSeg++
		next.Written = r.Size()
	}
	next.nextSeg = e.nextSeg
	next.changed = plan.refs(r)
	next.removed = slices.Sorted(slices.Values(drops))
	e.mu.Lock()
	keep := min(len(e.snaps)+1, e.opts.Retain)
	if keep > 1 {
		next.retained = e.snaps[len(e.snaps)+1-keep].ID
	} else {
		next.retained = next.ID
	}
	e.mu.Unlock()

	// 2. The commit point.
	rec := next.record()
	if prev == nil {
		rec.Kind = manifest.Full
	}
	if _, err := e.man.Append(rec); err != nil {
		e.dropSegment(r)
		return Snapshot{}, e.fail(fmt.Errorf("instadump: appending snapshot %d to manifest %s: %w", next.ID, e.path(manifest.FileName(e.manNum)), err))
	}
	if err := e.man.Sync(); err != nil {
		// The record may or may not be durable: keep the segment
		// (recovery decides), refuse writes from now on.
		return Snapshot{}, e.fail(fmt.Errorf("instadump: syncing manifest %s for snapshot %d: %w", e.path(manifest.FileName(e.manNum)), next.ID, err))
	}

	if rec.Kind == manifest.Full {
		// The manifest holds what a rollover would write: it rolls over
		// once it is four times this, as after a rollover.
		e.manLimit = max(e.opts.ManifestLimit, 4*e.man.Size())
	}

	// 3. Install.
	e.mu.Lock()
	e.cur = next.apply(e.cur, func(prev *Ref, had bool, nr *Ref, has bool) {
		e.live.change(next.ID, prev, had, nr, has)
	})
	next.States = len(e.cur)
	if r != nil {
		e.live.sized(r.ID(), r.Size())
	}
	e.snaps = append(e.snaps, next)
	e.snaps = e.snaps[len(e.snaps)-keep:]
	e.snaps[0].forget()
	garbage := e.live.age(e.snaps[0].ID)
	if plan.compacting {
		e.compactedAt = next.ID
	}
	e.compact = e.live.wasteful() && e.compactedAt < e.snaps[0].ID
	e.mu.Unlock()
	e.notifyShipper()

	// 4. Clean up.
	e.collect(garbage)
	if e.man.Size() > e.manLimit {
		if err := e.rollover(e.manNum + 1); err != nil && e.failed == nil {
			// Still appending to the old manifest, which is valid.
			e.log.Warn("instadump: manifest rollover failed; will retry at the next save", "err", err)
		}
	}
	return next.Snapshot, nil
}

// writeSegment writes segment id holding values, syncs it and the
// directory, and returns its reader, registered for reads. On failure
// (or a panic in a value's WriteTo) the segment is removed.
func (e *Engine) writeSegment(id uint64, values []value) (_ *segReader, err error) {
	path := e.path(segment.FileName(id))
	f, err := e.fs.Create(path)
	if err != nil {
		return nil, fmt.Errorf("instadump: creating segment %s (the previous snapshot is intact): %w", path, err)
	}
	var w *segment.Writer
	done := false
	defer func() {
		if !done { // an error, or a panic on its way up
			if w != nil {
				w.Abort()
			}
			f.Close()
			e.fs.Remove(path) // abandoned: never trusted, never referenced
		}
	}()
	what := "writing"
	fail := func(err error) (*segReader, error) {
		return nil, fmt.Errorf("instadump: %s segment %s (the previous snapshot is intact): %w", what, path, err)
	}
	// Chunks compress on every core: the encoding that feeds them is the
	// smaller part of a save (workload B: 426 against 719 ms with one
	// core left to the encoder).
	if w, err = segment.NewWriter(f, id, segment.Options{Level: e.opts.Level, Values: len(values)}); err != nil {
		return fail(err)
	}
	for _, v := range values {
		if err := e.writeValue(w, v); err != nil {
			return fail(err)
		}
	}
	info, err := w.Finish()
	if err != nil {
		return fail(err)
	}
	what = "syncing"
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	// The segment's name must be durable before a record points at it.
	what = "syncing the directory of"
	if err := e.fs.SyncDir(e.dir); err != nil {
		return fail(err)
	}
	what = "reading back"
	r, err := segment.Open(f, info.Size, path)
	if err != nil {
		return fail(err)
	}
	sr := &segReader{Reader: r, f: f}
	e.mu.Lock()
	e.readers[id] = sr
	e.mu.Unlock()
	done = true
	return sr, nil
}

func (e *Engine) writeValue(w *segment.Writer, v value) error {
	if v.from != nil {
		l := v.from
		e.mu.Lock()
		r, err := e.acquire(l.Segment)
		e.mu.Unlock()
		if err != nil {
			return fmt.Errorf("compaction reading %q: %w", l.Name, err)
		}
		stored, err := r.ReadStored(segment.Entry{Name: l.Name, Offset: l.Offset, StoredLen: l.StoredLen, RawLen: l.RawLen, StoredSum: l.StoredSum, RawSum: l.RawSum})
		e.mu.Lock()
		e.release(r)
		e.mu.Unlock()
		if err != nil {
			return fmt.Errorf("compaction reading %q: %w", l.Name, err)
		}
		return w.AddStored(v.name, stored, l.RawLen, l.RawSum)
	}
	vw, err := w.Value(v.name)
	if err != nil {
		return err
	}
	_, err = v.wt.WriteTo(vw)
	if cerr := vw.Close(); err == nil {
		err = cerr
	}
	return err
}

// dropSegment abandons a segment whose commit record was never written.
func (e *Engine) dropSegment(r *segReader) {
	if r == nil {
		return
	}
	e.mu.Lock()
	e.retire(r)
	e.mu.Unlock()
	e.fs.Remove(e.path(segment.FileName(r.ID())))
}
