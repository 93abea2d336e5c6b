package engine

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"time"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

// Change is a state's new value: its msgpack encoding.
type Change struct {
	Name string
	Raw  []byte
}

func sortedStateNames(m map[string]manifest.StateRef) []string {
	return slices.Sorted(maps.Keys(m))
}

// Commit is CommitFunc with the values at hand.
func (e *Engine) Commit(changes []Change) (manifest.Snapshot, error) {
	names := make([]string, len(changes))
	for i, c := range changes {
		names[i] = c.Name
	}
	return e.CommitFunc(names, func(w *segment.Writer) error {
		for _, c := range changes {
			if err := w.Add(c.Name, c.Raw); err != nil {
				return err
			}
		}
		return nil
	})
}

// CommitFunc makes a new snapshot: the current one with the states in
// names given new values, which fill adds to the new segment's writer
// (exactly those names, by Add or Value). States not in names keep their
// current value, whether or not anyone registered them. It returns when
// the snapshot is durable. With no names, it returns the current snapshot
// (if there is one) and writes nothing. Commits are serialised.
func (e *Engine) CommitFunc(names []string, fill func(*segment.Writer) error) (manifest.Snapshot, error) {
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	switch {
	case e.isClosed():
		return manifest.Snapshot{}, errs.ErrClosed
	case e.opts.ReadOnly:
		return manifest.Snapshot{}, errs.ErrReadOnly
	case e.failed != nil:
		return manifest.Snapshot{}, e.failed
	}
	prev, havePrev := e.Current()
	if len(names) == 0 && havePrev {
		return prev, nil
	}
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if n == "" || len(n) > segment.MaxNameLen || seen[n] {
			return manifest.Snapshot{}, fmt.Errorf("instadump: bad or repeated state name %q in a commit", n)
		}
		seen[n] = true
	}
	next := manifest.Snapshot{ID: prev.ID + 1, Time: time.Now().UTC(), States: maps.Clone(prev.States)}
	if next.States == nil {
		next.States = map[string]manifest.StateRef{}
	}
	// Values to write: the changes, and with compaction every other state.
	var carried []string
	since := map[string]uint64{}
	if e.shouldCompact(prev, seen) {
		for _, name := range sortedStateNames(prev.States) {
			if !seen[name] {
				carried = append(carried, name)
				since[name] = prev.States[name].Since
			}
		}
		e.log.Info("instadump: compacting: rewriting every live value into one segment", "snapshot", next.ID, "states", len(names)+len(carried))
	}
	var r *segReader
	if len(names)+len(carried) > 0 {
		var err error
		r, err = e.writeSegment(e.nextSeg, func(w *segment.Writer) error {
			if err := fill(w); err != nil {
				return err
			}
			for _, name := range carried {
				raw, err := e.Read(prev.States[name])
				if err != nil {
					return fmt.Errorf("compaction reading state %q: %w", name, err)
				}
				if err := w.Add(name, raw); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return manifest.Snapshot{}, err
		}
		if !writtenAsAsked(r.Entries(), seen, since) {
			e.dropSegment(r)
			return manifest.Snapshot{}, fmt.Errorf("instadump: the values written to %s are not the %d states of the commit", r.File(), len(names))
		}
		e.nextSeg++
		for _, ent := range r.Entries() {
			s := since[ent.Name]
			if s == 0 {
				s = next.ID
			}
			next.States[ent.Name] = manifest.StateRef{Segment: r.ID(), Entry: ent, Since: s}
		}
		next.Written = r.Size()
	}
	next.NextSegment = e.nextSeg
	retained := append(append([]manifest.Snapshot(nil), e.Snapshots()...), next)
	if over := len(retained) - e.opts.Retain; over > 0 {
		retained = retained[over:]
	}
	next.Retained = retained[0].ID // readers must not expect older segments
	rec := manifest.FullRecord(&next)
	if havePrev {
		rec = manifest.Diff(&prev, &next)
	}
	if _, err := e.man.Append(rec); err != nil {
		e.dropSegment(r)
		return manifest.Snapshot{}, e.fail(fmt.Errorf("instadump: appending snapshot %d to manifest %s: %w", next.ID, e.path(manifest.FileName(e.manNum)), err))
	}
	if err := e.man.Sync(); err != nil {
		// The record may or may not be durable: keep the segment (recovery
		// decides), refuse writes from now on.
		return manifest.Snapshot{}, e.fail(fmt.Errorf("instadump: syncing manifest %s for snapshot %d: %w", e.path(manifest.FileName(e.manNum)), next.ID, err))
	}
	// Committed.
	e.mu.Lock()
	e.snaps = retained
	e.mu.Unlock()
	e.collect()
	if e.man.Size() > e.manLimit {
		if err := e.rollover(e.manNum + 1); err != nil && e.failed == nil {
			// Still appending to the old manifest, which is valid.
			e.log.Warn("instadump: manifest rollover failed; will retry at the next save", "err", err)
		}
	}
	return next, nil
}

// writtenAsAsked says whether a segment holds exactly the changed and
// carried states.
func writtenAsAsked(entries []segment.Entry, changed map[string]bool, carried map[string]uint64) bool {
	if len(entries) != len(changed)+len(carried) {
		return false
	}
	for _, ent := range entries {
		if _, ok := carried[ent.Name]; !ok && !changed[ent.Name] {
			return false
		}
	}
	return true
}

func (e *Engine) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// writeSegment writes segment id with the values fill adds, syncs it and
// the directory, and returns its reader. On failure the segment is
// removed.
func (e *Engine) writeSegment(id uint64, fill func(*segment.Writer) error) (*segReader, error) {
	path := e.path(segment.FileName(id))
	f, err := e.fs.Create(path)
	if err != nil {
		return nil, fmt.Errorf("instadump: creating segment %s: %w", path, err)
	}
	fail := func(what string, err error) (*segReader, error) {
		f.Close()
		e.fs.Remove(path) // abandoned: never trusted, never referenced
		return nil, fmt.Errorf("instadump: %s segment %s (the previous snapshot is intact): %w", what, path, err)
	}
	w, err := segment.NewWriter(f, id, segment.Options{Level: e.opts.Level, Workers: max(1, runtime.GOMAXPROCS(0)-1)})
	if err != nil {
		return fail("writing", err)
	}
	if err := fill(w); err != nil {
		w.Finish()
		return fail("writing", err)
	}
	info, err := w.Finish()
	if err != nil {
		return fail("writing", err)
	}
	if err := f.Sync(); err != nil {
		return fail("syncing", err)
	}
	// The segment's name must be durable before a record points at it.
	if err := e.fs.SyncDir(e.dir); err != nil {
		return fail("syncing the directory of", err)
	}
	r, err := segment.Open(f, info.Size, path)
	if err != nil {
		return fail("reading back", err)
	}
	sr := &segReader{Reader: r, f: f}
	e.mu.Lock()
	e.readers[id] = sr
	e.mu.Unlock()
	return sr, nil
}

// dropSegment abandons a segment whose commit record was never written.
func (e *Engine) dropSegment(r *segReader) {
	if r == nil {
		return
	}
	e.mu.Lock()
	delete(e.readers, r.ID())
	e.mu.Unlock()
	r.f.Close()
	e.fs.Remove(e.path(segment.FileName(r.ID())))
}

// collect deletes the segments no retained snapshot references. A failure
// leaves garbage for the next open to remove.
func (e *Engine) collect() {
	e.mu.Lock()
	used := usedSegments(e.snaps)
	var drop []*segReader
	for id, r := range e.readers {
		if !used[id] {
			drop = append(drop, r)
			delete(e.readers, id)
		}
	}
	e.mu.Unlock()
	if len(drop) == 0 {
		return
	}
	// No directory sync: a removal that a crash undoes leaves an orphan,
	// which the next open removes.
	for _, r := range drop {
		r.f.Close()
		name := segment.FileName(r.ID())
		if err := e.fs.Remove(e.path(name)); err != nil {
			e.log.Warn("instadump: cannot delete an unused segment; the next open will", "file", name, "err", err)
		}
	}
}

// shouldCompact says whether, after a commit writing the states in
// changed, more than half of the bytes in the segments the retained
// snapshots reference would be dead: values (and their index entries)
// that no retained snapshot references.
func (e *Engine) shouldCompact(prev manifest.Snapshot, changed map[string]bool) bool {
	e.mu.Lock()
	// The snapshots that stay retained after the commit.
	keep := e.snaps
	if over := len(keep) + 1 - e.opts.Retain; over > 0 {
		keep = keep[over:]
	}
	live := liveSet{}
	for i := range keep {
		for name, ref := range keep[i].States {
			live.add(name, ref)
		}
	}
	for name, ref := range prev.States {
		if !changed[name] {
			live.add(name, ref)
		}
	}
	e.mu.Unlock()
	var liveBytes, total int64
	for seg, n := range live.bySegment() {
		liveBytes += n
		r, err := e.reader(seg)
		if err != nil {
			return false // reading it fails anyway; compaction would too
		}
		total += r.Size() - segment.MinFileSize
	}
	return total-liveBytes > liveBytes
}
