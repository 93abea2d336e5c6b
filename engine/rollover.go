package engine

import (
	"fmt"

	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/manifest"
)

// Rollover starts a new manifest holding the retained snapshots (a full
// record of the oldest, then each later one's delta) and makes CURRENT
// name it:
//
//  1. Write MANIFEST-N, fsync it and the directory.
//  2. Write CURRENT.tmp, fsync it, rename it over CURRENT, fsync the
//     directory. From the rename on, which CURRENT is durable is unknown
//     until the directory sync succeeds, so a failure there is sticky.
//  3. Delete the old manifest; the one recovery read records from that it
//     did not load (asideMan) is moved aside instead, once.
//
// Recovery always rolls over, so that nothing is appended to a file an
// earlier process wrote; commits roll over when the manifest has grown
// past its limit.

func (e *Engine) rollover(num uint64) error {
	name := manifest.FileName(num)
	path := e.path(name)
	f, err := e.fs.Create(path)
	if err != nil {
		return fmt.Errorf("instadump: creating manifest %s: %w", path, err)
	}
	abandon := func(err error) error {
		f.Close()
		e.fs.Remove(path)
		e.fs.Remove(e.path(currentTmp))
		return err
	}
	w, err := manifest.Create(f, num)
	if err != nil {
		return abandon(fmt.Errorf("instadump: writing manifest %s: %w", path, err))
	}
	// 1. The retained snapshots, the oldest in full.
	e.mu.Lock()
	recs := make([]manifest.Record, len(e.snaps))
	for i, s := range e.snaps {
		s.retained = e.snaps[0].ID
		recs[i] = s.record()
	}
	if len(e.snaps) > 0 {
		recs[0].Kind, recs[0].Removed = manifest.Full, nil
		recs[0].States = e.refsAt(0)
	}
	e.mu.Unlock()
	for _, rec := range recs {
		if _, err := w.Append(rec); err != nil {
			return abandon(fmt.Errorf("instadump: writing manifest %s: %w", path, err))
		}
	}
	if err := w.Sync(); err != nil {
		return abandon(fmt.Errorf("instadump: syncing manifest %s: %w", path, err))
	}
	if err := e.fs.SyncDir(e.dir); err != nil {
		return abandon(fmt.Errorf("instadump: syncing directory %s: %w", e.dir, err))
	}
	// 2. CURRENT names it.
	if err := e.writeSynced(currentTmp, manifest.EncodeCurrent(num)); err != nil {
		return abandon(err)
	}
	if err := e.fs.Rename(e.path(currentTmp), e.path(CurrentFile)); err != nil {
		f.Close()
		return e.fail(fmt.Errorf("instadump: renaming %s over CURRENT in %s: %w", currentTmp, e.dir, err))
	}
	if err := e.fs.SyncDir(e.dir); err != nil {
		f.Close()
		return e.fail(fmt.Errorf("instadump: syncing directory %s after switching CURRENT: %w", e.dir, err))
	}
	old, oldNum := e.manFile, e.manNum
	e.man, e.manFile, e.manNum = w, f, num
	e.manLimit = max(e.opts.ManifestLimit, 4*w.Size())
	if old != nil {
		old.Close()
	}
	// 3. The old manifest goes.
	if oldNum != 0 && oldNum != num {
		oldName := manifest.FileName(oldNum)
		if oldNum == e.asideMan {
			e.asideMan = 0
			e.moveAside(oldName)
		} else if err := e.fs.Remove(e.path(oldName)); err != nil && !vfs.IsNotExist(err) {
			e.log.Warn("instadump: cannot remove the old manifest; it will be removed at the next open", "file", oldName, "err", err)
		}
	}
	return nil
}

// writeSynced writes a new file name holding data and syncs it (not its
// directory).
func (e *Engine) writeSynced(name string, data []byte) error {
	err := createSynced(e.fs, e.path(name), func(f File) error {
		_, err := f.Write(data)
		return err
	})
	if err != nil {
		return fmt.Errorf("instadump: %w", err)
	}
	return nil
}

// createSynced creates the file path, fills it, syncs it (not its
// directory) and closes it.
func createSynced(fsys FS, path string, fill func(f File) error) error {
	f, err := fsys.Create(path)
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	err = fill(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
