package engine

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

// dirState is what a listing of the directory says.
type dirState struct {
	names     []string
	segs      []uint64 // sorted
	aside     []uint64 // segments moved aside (NAME.broken), sorted
	manifests []uint64 // sorted
}

func (e *Engine) list() (*dirState, error) {
	names, err := e.fs.List(e.dir)
	if err != nil {
		return nil, fmt.Errorf("instadump: cannot list DB directory %s: %w", e.dir, err)
	}
	d := &dirState{names: names}
	for _, n := range names {
		if id, ok := segment.ParseFileName(n); ok {
			d.segs = append(d.segs, id)
		}
		if num, ok := manifest.ParseFileName(n); ok {
			d.manifests = append(d.manifests, num)
		}
		if base, ok := strings.CutSuffix(n, BrokenSuffix); ok {
			if id, ok := segment.ParseFileName(base); ok {
				d.aside = append(d.aside, id)
			}
		}
	}
	slices.Sort(d.segs)
	slices.Sort(d.aside)
	slices.Sort(d.manifests)
	return d, nil
}

func (e *Engine) recover() error {
	d, err := e.list()
	if err != nil {
		return err
	}
	if e.opts.ReadOnly {
		// Beside a saving owner: hold every segment there is before
		// reading the manifest, so that the owner deleting one after we
		// read it cannot take it away (an open file outlives its name).
		e.mu.Lock()
		for _, id := range d.segs {
			e.acquire(id) // one being written does not open yet: fine
		}
		e.mu.Unlock()
	}
	num, log, err := e.readManifest(d)
	if err != nil {
		return err
	}
	if log == nil { // a new directory
		if err := e.noSnapshot(d, 0); err != nil {
			return err
		}
		if e.opts.ReadOnly {
			return fmt.Errorf("%w: %s has no CURRENT file and no manifest", errs.ErrNotDB, e.dir)
		}
		return e.start(d, 0)
	}
	switch {
	case log.Tail == manifest.TailDamaged:
		// Damage, not a crash: the record was written whole, so its
		// snapshot may have been acknowledged. Loading the one before it
		// is a fallback like any other: strict by default.
		if !e.opts.Fallback {
			return log.TailErr
		}
		if len(log.Records) == 0 {
			return noFallback(log.TailErr)
		}
		e.report.DamagedTail = log.TailErr
		e.fellBack(0, log.TailErr, "the manifest's last commit record is DAMAGED (complete, but it fails its checksum): its snapshot cannot be loaded; FELL BACK to the snapshot before it, keeping aside the files that record may name")
		// What the record may name is kept (keepUnused), and so is the
		// manifest holding it.
		e.asideMan = num
	case log.TailErr != nil:
		e.report.TornTail = log.TailErr
		e.log.Warn("instadump: ignoring the torn tail of the manifest, left by a crash during a save that was never acknowledged", "err", log.TailErr)
	}
	if len(log.Records) == 0 {
		if err := e.noSnapshot(d, num); err != nil {
			return err
		}
	}
	if err := e.fold(log, e.path(manifest.FileName(num))); err != nil {
		return err
	}
	if err := e.checkSnapshots(num); err != nil {
		return err
	}
	e.mu.Lock()
	e.account()
	for id, r := range e.readers {
		e.live.sized(id, r.Size())
	}
	e.mu.Unlock()
	for _, s := range e.snaps {
		e.nextSeg = max(e.nextSeg, s.nextSeg)
	}
	for _, r := range e.cur {
		locs(&r, func(l *Loc) { e.nextSeg = max(e.nextSeg, l.Segment+1) })
	}
	if e.opts.ReadOnly {
		if err := e.holdRetained(); err != nil {
			return err
		}
		e.records = log
		return nil
	}
	return e.start(d, num)
}

// noSnapshot checks the segments of a directory whose manifest (number
// num; 0: there is none) holds no snapshot. A save writes its segment
// before its commit record, so a crash during a first save leaves one
// segment beside a manifest with no snapshot; the open after it moves
// the segment aside, and the next first save writes the segment after
// it. Segments that look like that (firstSaveLeft) are moved aside,
// never deleted: a manifest of one snapshot damaged back to its header
// can leave the same. Any others no crash leaves: the manifest was
// damaged, cut or removed, and the open fails, touching nothing, rather
// than start empty.
func (e *Engine) noSnapshot(d *dirState, num uint64) error {
	if len(d.segs) == 0 {
		return nil
	}
	if num != 0 && firstSaveLeft(d) {
		if !e.opts.ReadOnly {
			name := segment.FileName(d.segs[0])
			e.log.Warn("instadump: the manifest holds no snapshot, yet a segment is there: moving it aside, not deleting it; a crash during a first save leaves this, and so does a manifest damaged back to its header (then restore the directory from a backup)", "segment", name, "manifest", manifest.FileName(num))
			e.moveAside(name)
		}
		return nil
	}
	file, what := e.dir, "there is no CURRENT and no manifest"
	if num != 0 {
		file, what = e.path(manifest.FileName(num)), "the manifest holds no snapshot"
	}
	return noFallback(errs.Corruptf(file, 0, "%s, yet %d segment files that saves wrote are there (%s to %s), which no crash leaves: the manifest was damaged, cut or removed; nothing was deleted (to start empty instead, move the segments away)",
		what, len(d.segs), segment.FileName(d.segs[0]), segment.FileName(d.segs[len(d.segs)-1])))
}

// firstSaveLeft says whether the segments of d are what crashed first
// saves leave: one segment, k, and segments 1 to k-1 moved aside (each by
// the open after the crash that left it), none past k.
func firstSaveLeft(d *dirState) bool {
	if len(d.segs) != 1 || d.segs[0] == 0 {
		return false
	}
	k := d.segs[0]
	return uint64(len(d.aside)) == k-1 && (k == 1 || d.aside[len(d.aside)-1] < k)
}

// holdRetained opens the segments of every retained snapshot, not only
// the current one's, for a read-only engine beside a saving owner: a
// segment written after the listing that recover holds, then deleted by
// the owner's garbage collection, would be missing to a later read of an
// older snapshot (verify, ReloadFrom) though it was there to hold. One
// missing now makes the open start over; once the retries are half
// spent (tolerateMissing), a segment still missing is left for the read
// that needs it to report.
func (e *Engine) holdRetained() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range e.retainedSegments() {
		if e.readers[id] != nil {
			continue
		}
		if _, err := e.acquire(id); errors.Is(err, errs.ErrMissing) && !e.tolerateMissing {
			return err
		}
	}
	return nil
}

// start finishes a read-write recovery: it removes what no retained
// snapshot needs and starts a new manifest (this process never appends
// to a file whose unsynced bytes an earlier process may have left in an
// unknown state: RocksDB #6316).
func (e *Engine) start(d *dirState, num uint64) error {
	if e.report.FellBack {
		// A DB that replicated continues as a new lineage from the
		// snapshot it fell back to: noted before anything is moved aside
		// or rolled over (a crash falls back again), whether or not this
		// open replicates, or a later open would take the old lineage,
		// whose newer snapshots are in the store.
		l, ok, err := readLineage(e.fs, e.dir)
		if err != nil {
			return fmt.Errorf("instadump: the DB fell back, and its %s does not read, so its new lineage cannot be noted; nothing was changed: repair %s, or remove it to replicate as a new DB, and open again: %w", LineageFile, LineageFile, err)
		}
		if ok {
			if _, err := e.settleLineage(l, ok); err != nil {
				return fmt.Errorf("instadump: the DB fell back, and its new lineage cannot be noted; nothing was changed: open it again once %s can be written: %w", LineageFile, err)
			}
		}
	}
	// A number is never used twice, not even one moved aside.
	if len(d.segs) > 0 {
		e.nextSeg = max(e.nextSeg, d.segs[len(d.segs)-1]+1)
	}
	if len(d.aside) > 0 {
		e.nextSeg = max(e.nextSeg, d.aside[len(d.aside)-1]+1)
	}
	e.nextSeg = max(e.nextSeg, 1)
	if err := e.removeOrphans(num); err != nil {
		return err
	}
	e.manNum = num // the rollover removes it
	next := num + 1
	if len(d.manifests) > 0 {
		next = max(next, d.manifests[len(d.manifests)-1]+1)
	}
	return e.rollover(next)
}

// readManifest reads CURRENT and replays the manifest it names. A
// directory with neither CURRENT nor a manifest holding records is new:
// it returns a nil log. With Options.Fallback, a CURRENT or manifest that
// does not read gives way to the newest manifest that does.
func (e *Engine) readManifest(d *dirState) (uint64, *manifest.Log, error) {
	num, err := e.readCurrent()
	if vfs.IsNotExist(err) {
		for _, n := range slices.Backward(d.manifests) {
			if log, _, err := e.replayFile(n, false); err == nil && len(log.Records) == 0 && log.Tail != manifest.TailDamaged || e.headerOnly(n) {
				// No record: the start of a first manifest that a crash cut
				// short (its name can be durable before its header is). A
				// damaged one is not that.
				continue
			}
			err := errs.Missing(e.path(CurrentFile), "CURRENT is missing but %s exists and is not an empty manifest", manifest.FileName(n))
			return e.fallBackManifest(d, err)
		}
		return 0, nil, nil
	}
	if err != nil {
		return e.fallBackManifest(d, err)
	}
	log, damage, err := e.replayFile(num, e.opts.Fallback)
	if vfs.IsNotExist(err) {
		err = errs.Missing(e.path(manifest.FileName(num)), "manifest %s named by CURRENT is missing", manifest.FileName(num))
	}
	if err == nil && log.FileNum != num {
		err = errs.Corruptf(e.path(manifest.FileName(num)), 16, "manifest file number %d, the file name says %d", log.FileNum, num)
	}
	if err != nil {
		return e.fallBackManifest(d, err)
	}
	if damage != nil {
		e.fellBack(0, damage, fmt.Sprintf("%s is damaged; FELL BACK to the records before the damage", manifest.FileName(num)))
		e.asideMan = num
	}
	return num, log, nil
}

// headerOnly says whether manifest num is no longer than a header, so
// that it holds no record, whatever its bytes are.
func (e *Engine) headerOnly(num uint64) bool {
	f, size, err := e.openSized(manifest.FileName(num))
	if err != nil {
		return false
	}
	f.Close()
	return size <= manifest.HeaderSize
}

func (e *Engine) readCurrent() (uint64, error) {
	f, size, err := e.openSized(CurrentFile)
	if err != nil {
		if vfs.IsNotExist(err) {
			return 0, err
		}
		return 0, fmt.Errorf("instadump: reading %s: %w", e.path(CurrentFile), err)
	}
	defer f.Close()
	if size > manifest.MaxCurrentSize {
		return 0, errs.Corruptf(e.path(CurrentFile), manifest.MaxCurrentSize, "CURRENT is %d bytes, more than %d", size, manifest.MaxCurrentSize)
	}
	data, err := vfs.ReadAll(f, size)
	if err != nil {
		return 0, fmt.Errorf("instadump: reading %s: %w", e.path(CurrentFile), err)
	}
	return manifest.DecodeCurrent(data, e.path(CurrentFile))
}

// replayFile replays manifest file number num. With prefix, a manifest
// damaged in its middle replays up to the damage: damage then says what
// is wrong past the records returned.
func (e *Engine) replayFile(num uint64, prefix bool) (log *manifest.Log, damage, err error) {
	name := manifest.FileName(num)
	f, size, err := e.openSized(name)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	data, err := vfs.ReadAll(f, size)
	if err != nil {
		return nil, nil, fmt.Errorf("instadump: reading %s: %w", e.path(name), err)
	}
	log, err = manifest.ReplayBytes(data, e.path(name))
	var ce *errs.CorruptError
	if err != nil && prefix && errors.As(err, &ce) && ce.Offset > manifest.HeaderSize && ce.Offset <= int64(len(data)) {
		if prefix, perr := manifest.ReplayBytes(data[:ce.Offset], e.path(name)); perr == nil && len(prefix.Records) > 0 {
			return prefix, err, nil
		}
	}
	return log, nil, err
}

// fallBackManifest is what happens when CURRENT or the manifest it names
// cannot be read: an error, or with Options.Fallback the newest manifest
// in the directory that replays, said loudly.
func (e *Engine) fallBackManifest(d *dirState, cause error) (uint64, *manifest.Log, error) {
	if !e.opts.Fallback {
		return 0, nil, cause
	}
	for _, n := range slices.Backward(d.manifests) {
		log, damage, err := e.replayFile(n, true)
		if err != nil || log.FileNum != n || len(log.Records) == 0 {
			continue
		}
		e.fellBack(0, cause, fmt.Sprintf("CURRENT or the manifest it names cannot be read; FELL BACK to %s, the newest manifest that replays", manifest.FileName(n)))
		if damage != nil {
			e.fellBack(0, damage, fmt.Sprintf("%s is damaged too; FELL BACK to the records before the damage", manifest.FileName(n)))
			e.asideMan = n
		}
		// Only CURRENT goes aside: n is kept as the manifest recovery
		// reads, and the rollover that ends recovery makes CURRENT name
		// a manifest holding its snapshots, durably.
		e.keepAside(CurrentFile)
		return n, log, nil
	}
	return 0, nil, noFallback(cause)
}

// noFallback marks cause as damage that fallback could not escape.
func noFallback(cause error) error {
	var ce *errs.CorruptError
	if errors.As(cause, &ce) {
		c := *ce
		c.Hint = errs.HintNoFallback
		return &c
	}
	return fmt.Errorf("%w (fallback found no intact retained snapshot either: restore the directory from a backup)", cause)
}

// fold turns the manifest's records into the retained snapshots: those
// from the last record's oldest retained snapshot on (at most
// Options.Retain of them when writing), keeping only what each changed.
func (e *Engine) fold(log *manifest.Log, file string) error {
	recs := log.Records
	if len(recs) == 0 {
		return nil
	}
	first := 0
	floor := recs[len(recs)-1].Retained
	for first < len(recs)-1 && recs[first].Snapshot < floor {
		first++
	}
	if !e.opts.ReadOnly || floor == 0 {
		first = max(first, len(recs)-e.opts.Retain)
	}
	if e.opts.ReadOnly && floor == 0 {
		first = 0 // no floor recorded: every snapshot the file holds
	}
	states := map[string]Ref{}
	for i := range recs {
		rec := &recs[i]
		s := &snap{Snapshot: Snapshot{ID: rec.Snapshot, Time: rec.Time, Written: rec.Written}, nextSeg: rec.NextSegment, retained: rec.Retained}
		if rec.Kind == manifest.Full {
			next := make(map[string]Ref, len(rec.States))
			for _, r := range rec.States {
				next[r.Name] = r
			}
			s.changed, s.removed = diff(states, next)
		} else {
			for _, n := range rec.Removed {
				if _, ok := states[n]; !ok {
					return errs.Corruptf(file, log.Offsets[i], "snapshot %d removes state %q, which snapshot %d does not have", rec.Snapshot, n, rec.Snapshot-1)
				}
			}
			s.changed = slices.Clone(rec.States)
			sortRefs(s.changed)
			s.removed = slices.Sorted(slices.Values(rec.Removed))
		}
		states = s.apply(states, nil)
		s.States = len(states)
		if i >= first {
			e.snaps = append(e.snaps, s)
		}
	}
	e.cur = states
	if len(e.snaps) > 0 {
		e.snaps[0].forget()
	}
	return nil
}
