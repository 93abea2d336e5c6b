package engine

import (
	"fmt"
	"maps"
	"slices"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

// Recovery's checks: every segment the current snapshot uses must open
// and agree with the manifest on where each value is; with
// Options.Fallback every value is read and verified too, and a damaged
// current snapshot gives way to the newest intact retained one.

// checkSnapshots checks the current snapshot and, if it is damaged,
// fails or falls back. Falling back drops the newer snapshots, so the
// manifest num, which holds their records, is to be moved aside.
func (e *Engine) checkSnapshots(num uint64) error {
	if len(e.snaps) == 0 {
		return nil
	}
	last := len(e.snaps) - 1
	problems := e.check(last, e.opts.Fallback)
	if len(problems) == 0 {
		e.noteFallback()
		return nil
	}
	if !e.opts.Fallback {
		return problems[0]
	}
	for k := last - 1; k >= 0; k-- {
		if len(e.check(k, true)) > 0 {
			continue
		}
		e.fellBack(e.snaps[last].ID, problems[0], fmt.Sprintf("the current snapshot is damaged; FELL BACK to snapshot %d: every change saved after it is not loaded", e.snaps[k].ID))
		e.mu.Lock()
		e.cur = e.statesAt(k)
		e.snaps = e.snaps[:k+1]
		e.mu.Unlock()
		e.asideMan = num
		// Whatever only the dropped snapshots use, damaged or intact,
		// goes aside, never away: removeOrphans (keepUnused).
		e.noteFallback()
		return nil
	}
	return noFallback(problems[0])
}

// check checks retained snapshot i: that every segment it uses opens and
// agrees with the manifest on where each value is, and with deep that
// every value reads back intact. It returns every problem, each naming
// its file and offset, one a segment that does not open.
func (e *Engine) check(i int, deep bool) []error {
	e.mu.Lock()
	states := e.statesAt(i)
	id := e.snaps[i].ID
	e.mu.Unlock()
	var problems []error
	unreadable := map[uint64]bool{}
	for _, name := range slices.Sorted(maps.Keys(states)) {
		r := states[name]
		locs(&r, func(l *Loc) {
			if unreadable[l.Segment] {
				return
			}
			e.mu.Lock()
			sr, err := e.acquire(l.Segment)
			e.mu.Unlock()
			if err != nil {
				unreadable[l.Segment] = true
				problems = append(problems, err)
				return
			}
			defer func() { e.mu.Lock(); e.release(sr); e.mu.Unlock() }()
			want := segment.Entry{Name: l.Name, Offset: l.Offset, StoredLen: l.StoredLen, RawLen: l.RawLen, StoredSum: l.StoredSum, RawSum: l.RawSum}
			if got, ok := sr.Find(l.Name); !ok || got != want {
				problems = append(problems, errs.Corruptf(sr.File(), l.Offset,
					"snapshot %d says state %q has a value at offset %d (%d bytes), but the segment's index does not agree", id, name, l.Offset, l.StoredLen))
				return
			}
			if deep {
				if err := sr.Check(want); err != nil {
					problems = append(problems, err)
				}
			}
		})
	}
	return problems
}

// fellBack records and logs, loudly, that recovery did not load the
// current snapshot. The first damage found is the one reported.
func (e *Engine) fellBack(damaged uint64, damage error, what string) {
	if !e.report.FellBack {
		e.report.FellBack, e.report.Damaged, e.report.Damage = true, damaged, damage
	}
	e.log.Error("instadump: "+what, "damaged", damaged, "err", damage)
}

// noteFallback records the snapshot a fallback ended on.
func (e *Engine) noteFallback() {
	if e.report.FellBack && len(e.snaps) > 0 {
		e.report.UsedID = e.snaps[len(e.snaps)-1].ID
	}
}

// keepUnused says whether recovery may not know every snapshot that used
// a file: after a fallback or past a damaged last record, the records of
// the snapshots it did not load (or could not read) may name any segment
// no retained snapshot uses, and such a segment may hold the only copy of
// intact values. Those go aside, never away.
func (e *Engine) keepUnused() bool { return e.report.FellBack || e.report.DamagedTail != nil }

// moveAside renames a file recovery will not use, damaged or only
// perhaps needed, to NAME.broken, never deleting it. Report.Broken lists
// it once the rename is done; a failed rename leaves it where it was, and
// logged.
func (e *Engine) moveAside(name string) {
	if err := e.fs.Rename(e.path(name), e.path(name+BrokenSuffix)); err != nil {
		if !vfs.IsNotExist(err) {
			e.log.Error("instadump: cannot move a file aside; it stays where it is", "file", name, "err", err)
		}
		return
	}
	if id, ok := segment.ParseFileName(name); ok {
		e.mu.Lock()
		if r := e.readers[id]; r != nil {
			e.retire(r)
		}
		e.mu.Unlock()
	}
	e.report.Broken = append(e.report.Broken, name+BrokenSuffix)
	e.log.Warn("instadump: moved a file recovery does not use aside; it is kept, never deleted", "file", name+BrokenSuffix)
}

// keepAside copies a damaged file to NAME.broken, for a file (CURRENT)
// that recovery is about to replace.
func (e *Engine) keepAside(name string) {
	if e.opts.ReadOnly {
		return
	}
	f, size, err := e.openSized(name)
	if err != nil {
		return // nothing to keep
	}
	data, err := vfs.ReadAll(f, min(size, manifest.MaxCurrentSize))
	f.Close()
	if err == nil {
		err = e.writeSynced(name+BrokenSuffix, data)
	}
	if err != nil {
		e.log.Error("instadump: cannot keep a copy of a damaged file", "file", name, "err", err)
		return
	}
	e.report.Broken = append(e.report.Broken, name+BrokenSuffix)
}

// removeOrphans deletes what no retained snapshot needs: segments they
// don't use (those of a save that crashed before its commit record, or
// of snapshots retention dropped), manifests other than keep, the
// engine's temporary file. In a fallback, segments and manifests are
// moved aside instead (keepUnused): records recovery did not load may
// name them, and which manifest was right is not known.
func (e *Engine) removeOrphans(keep uint64) error {
	d, err := e.list()
	if err != nil {
		return err
	}
	var orphans []string
	e.mu.Lock()
	for _, n := range d.names {
		id, isSeg := segment.ParseFileName(n)
		num, isMan := manifest.ParseFileName(n)
		if (isSeg && e.live.bySeg[id] == 0) || (isMan && num != keep) || n == currentTmp {
			orphans = append(orphans, n)
		}
	}
	e.mu.Unlock()
	var removed []string
	for _, n := range orphans {
		if n != currentTmp && e.keepUnused() {
			e.moveAside(n)
			continue
		}
		if err := e.fs.Remove(e.path(n)); err != nil && !vfs.IsNotExist(err) {
			return fmt.Errorf("instadump: removing orphan file %s: %w", e.path(n), err)
		}
		removed = append(removed, n)
	}
	if len(removed) > 0 {
		e.report.Removed = removed
		e.log.Info("instadump: removed files no snapshot needs (left by a crash)", "files", removed)
		if err := e.fs.SyncDir(e.dir); err != nil {
			return fmt.Errorf("instadump: syncing directory %s: %w", e.dir, err)
		}
	}
	return nil
}
