package engine

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/replica"
	"github.com/instadump/instadump/segment"
)

// Restore, and what tools see of a store: its snapshots, and a check of
// every byte of them.

// RestoreOptions choose what Restore restores, and where it writes.
type RestoreOptions struct {
	// ID restores snapshot ID; Before the newest snapshot saved at or
	// before it; with both zero, the newest snapshot of the store.
	ID     uint64
	Before time.Time
	// FS is the filesystem the directory is written to; the operating
	// system's when nil.
	FS FS
}

// Restore writes snapshot o.ID (or the newest one saved at or before
// o.Before, or the newest) of the DB replicated in st into a new
// directory dir, which must not exist or be empty.
//
// It reads the location's timeline (see package replica's doc), picks
// the snapshot among those whose commit objects and segments are all
// there, follows its chain of commit objects (checking every checksum
// and link), downloads its segments into a temporary directory beside
// dir (".NAME.restore-*"), checks every one (header, trailer, index,
// every value's checksums) against the commit object, writes a manifest
// holding the snapshot, CURRENT, and a LINEAGE naming a new lineage
// that takes the location over from its owner when it replicates there
// (the snapshot is on the owner's timeline), syncs them all, and renames
// the directory into place. Into a directory that exists, empty (a mount
// point, say, which cannot be replaced), the temporary directory is made
// inside it (".restore-*") and the files are moved out of it, CURRENT
// last. On failure it removes the temporary directory and leaves
// nothing; a crash may leave the temporary directory, or files without
// CURRENT, which Open refuses: never a DB that opens with a part of the
// snapshot.
func Restore(ctx context.Context, st replica.Store, dir string, o RestoreOptions) (_ Snapshot, err error) {
	defer func() { err = errs.InReplica(err) }()
	fsys := o.FS
	if fsys == nil {
		fsys = vfs.OS
	}
	dir = filepath.Clean(dir)
	if fsys == vfs.OS && !filepath.IsAbs(dir) {
		// Absolute, so that the temporary directory beside it has a
		// parent to live in: for "." or "x/..", filepath.Dir and Base
		// name no directory the rename could move into place.
		abs, aerr := filepath.Abs(dir)
		if aerr != nil {
			return Snapshot{}, fmt.Errorf("instadump: restore into %s: the directory's absolute path: %w", dir, aerr)
		}
		dir = abs
	}
	names, err := fsys.List(dir)
	if err == nil && len(names) > 0 {
		return Snapshot{}, fmt.Errorf("instadump: restore into %s: the directory is not empty: restore into a new directory", dir)
	} else if err != nil && !vfs.IsNotExist(err) {
		return Snapshot{}, errs.Wrapf(err, "restore into %s", dir)
	}
	exists := err == nil
	loc, err := readLocation(ctx, st)
	if err != nil {
		return Snapshot{}, errs.Wrapf(err, "restore%s", fromStore(st, err))
	}
	e, err := loc.pick(o.ID, o.Before)
	if err != nil {
		return Snapshot{}, err
	}
	chain, err := loc.chain(e)
	if err != nil {
		return Snapshot{}, errs.Wrapf(err, "restore of snapshot %d%s", e.id, fromStore(st, err))
	}
	states, err := loc.fold(e, chain)
	if err != nil {
		return Snapshot{}, errs.Wrapf(err, "restore of snapshot %d%s", e.id, fromStore(st, err))
	}
	c := e.obj.c
	snap := Snapshot{ID: c.Snapshot, Time: c.Record.Time, States: len(states), Written: c.Record.Written}
	nextSeg := c.Record.NextSegment
	for _, sg := range c.Segments {
		nextSeg = max(nextSeg, sg.ID+1)
	}
	w := &restoreWriter{fsys: fsys, dir: dir, into: exists}
	if err := w.write(ctx, loc, e, states, snap, nextSeg); err != nil {
		w.abandon()
		return Snapshot{}, errs.Wrapf(err, "restore of snapshot %d%s into %s", e.id, fromStore(st, err), dir)
	}
	return snap, nil
}

// pick returns the snapshot to restore: id, or the newest saved at or
// before before, or the newest; only complete ones count but for an id
// asked for, which is an error if incomplete.
func (loc *location) pick(id uint64, before time.Time) (entry, error) {
	tl := loc.timeline()
	if len(tl) == 0 {
		if len(loc.owners) == 0 {
			return entry{}, fmt.Errorf("%w: %s holds no replicated DB", errs.ErrNoSnapshot, loc.st)
		}
		return entry{}, fmt.Errorf("%w: %s holds no snapshot yet", errs.ErrNoSnapshot, loc.st)
	}
	if id != 0 {
		for _, e := range tl {
			if e.id == id {
				if err := loc.complete(e); err != nil {
					return entry{}, errs.Wrapf(err, "snapshot %d%s cannot be restored", id, fromStore(loc.st, err))
				}
				return e, nil
			}
		}
		return entry{}, fmt.Errorf("%w: %s has no snapshot %d (it has %s)", errs.ErrNoSnapshot, loc.st, id, idList(tl))
	}
	var first error
	for _, e := range slices.Backward(tl) {
		if e.obj.c == nil || (!before.IsZero() && e.obj.c.Record.Time.After(before)) {
			continue
		}
		if err := loc.complete(e); err != nil {
			first = cmp.Or(first, err)
			continue
		}
		return e, nil
	}
	what := "no complete snapshot"
	if !before.IsZero() {
		what = "no complete snapshot saved at or before " + before.UTC().Format(time.RFC3339Nano)
	}
	if first != nil {
		return entry{}, fmt.Errorf("%w: %s has %s (it has %s; the newest fails with: %w)", errs.ErrNoSnapshot, loc.st, what, idList(tl), first)
	}
	return entry{}, fmt.Errorf("%w: %s has %s (it has %s)", errs.ErrNoSnapshot, loc.st, what, idList(tl))
}

func idList(tl []entry) string {
	ids := make([]string, len(tl))
	for i, e := range tl {
		ids[i] = fmt.Sprint(e.id)
	}
	return strings.Join(ids, ", ")
}

// restoreWriter writes a restored directory.
type restoreWriter struct {
	fsys  FS
	dir   string
	tmp   string
	into  bool     // dir exists (empty): the files move into it
	moved []string // moved into dir so far
}

func (w *restoreWriter) write(ctx context.Context, loc *location, e entry, states map[string]Ref, snap Snapshot, nextSeg uint64) error {
	parent := filepath.Dir(w.dir)
	if err := vfs.MkdirAllDurable(w.fsys, parent); err != nil {
		return fmt.Errorf("creating %s: %w", parent, err)
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	w.tmp = filepath.Join(parent, "."+filepath.Base(w.dir)+".restore-"+hex.EncodeToString(rnd[:]))
	if w.into { // on dir's filesystem, which may be another (a mount point)
		w.tmp = filepath.Join(w.dir, ".restore-"+hex.EncodeToString(rnd[:]))
	}
	if err := w.fsys.MkdirAll(w.tmp); err != nil {
		return fmt.Errorf("creating %s: %w", w.tmp, err)
	}
	buf := make([]byte, 1<<20)
	for _, sg := range e.obj.c.Segments {
		if err := w.segment(ctx, loc, e, sg, states, buf); err != nil {
			return err
		}
	}
	// The manifest: one full record, the only retained snapshot.
	rec := fullRecord(snap, nextSeg, states)
	rec.Retained = snap.ID
	if err := w.file(manifest.FileName(1), func(f File) error {
		mw, err := manifest.Create(f, 1)
		if err == nil {
			_, err = mw.Append(rec)
		}
		return err
	}); err != nil {
		return err
	}
	if err := w.file(CurrentFile, func(f File) error {
		_, err := f.Write(manifest.EncodeCurrent(1))
		return err
	}); err != nil {
		return err
	}
	// A new lineage: saving on, the restored DB is a new history, which
	// takes the location over from its owner (the snapshot is on the
	// owner's timeline, though it may be of a lineage before it).
	lin := Lineage{Parent: loc.owners[len(loc.owners)-1].Lineage, Fork: snap.ID}
	var err error
	if lin.ID, err = replica.NewLineage(); err != nil {
		return err
	}
	if err := writeLineage(w.fsys, w.tmp, lin); err != nil {
		return err
	}
	if err := w.fsys.SyncDir(w.tmp); err != nil {
		return fmt.Errorf("syncing %s: %w", w.tmp, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if w.into {
		return w.moveIn()
	}
	if err := w.fsys.Rename(w.tmp, w.dir); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", w.tmp, w.dir, err)
	}
	w.tmp = ""
	if err := w.fsys.SyncDir(parent); err != nil {
		return fmt.Errorf("syncing %s: %w", parent, err)
	}
	return nil
}

// moveIn moves the restored files from the temporary directory into dir,
// CURRENT last: a crash part way leaves no CURRENT, which Open refuses
// (the manifest and segments in place say so), never a DB that opens
// with a part of the snapshot.
func (w *restoreWriter) moveIn() error {
	names, err := w.fsys.List(w.tmp)
	if err != nil {
		return fmt.Errorf("listing %s: %w", w.tmp, err)
	}
	if i := slices.Index(names, CurrentFile); i >= 0 {
		names = append(slices.Delete(names, i, i+1), CurrentFile)
	}
	for _, n := range names {
		if n == CurrentFile {
			// Everything else is in place, durably, before CURRENT names it.
			if err := w.fsys.SyncDir(w.dir); err != nil {
				return fmt.Errorf("syncing %s: %w", w.dir, err)
			}
		}
		if err := w.fsys.Rename(filepath.Join(w.tmp, n), filepath.Join(w.dir, n)); err != nil {
			return fmt.Errorf("moving %s into %s: %w", n, w.dir, err)
		}
		w.moved = append(w.moved, n)
	}
	if err := w.fsys.Remove(w.tmp); err != nil {
		return fmt.Errorf("removing %s: %w", w.tmp, err)
	}
	if err := w.fsys.SyncDir(w.dir); err != nil {
		return fmt.Errorf("syncing %s: %w", w.dir, err)
	}
	w.tmp, w.moved = "", nil
	return nil
}

// file writes name in the temporary directory with fill, and syncs it.
func (w *restoreWriter) file(name string, fill func(f File) error) error {
	return createSynced(w.fsys, filepath.Join(w.tmp, name), fill)
}

// segment downloads segment sg of snapshot e, syncs it, and checks it:
// its size, ID and tag, every byte (segment.Reader.Verify), and that it
// holds every value of states it should, where the records say.
func (w *restoreWriter) segment(ctx context.Context, loc *location, e entry, sg replica.SegmentRef, states map[string]Ref, buf []byte) error {
	key := replica.SegmentKey(e.lin.id, sg)
	path := filepath.Join(w.tmp, segment.FileName(sg.ID))
	f, err := download(ctx, loc.st, key, sg.Size, func() (File, error) { return w.fsys.Create(path) }, buf)
	if err != nil {
		return err
	}
	r, err := checkSegment(f, sg, where(loc.st, key))
	if err == nil {
		err = checkLocs(r, sg.ID, states, where(loc.st, key))
	}
	if err == nil {
		if err = f.Sync(); err != nil {
			err = fmt.Errorf("writing %s: %w", path, err)
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("writing %s: %w", path, cerr)
	}
	return err
}

// abandon removes what a failed restore wrote: what it moved into dir
// (CURRENT first, so that a crash part way leaves no DB that opens), then
// the temporary directory.
func (w *restoreWriter) abandon() {
	if i := slices.Index(w.moved, CurrentFile); i >= 0 {
		w.moved = append([]string{CurrentFile}, slices.Delete(w.moved, i, i+1)...)
	}
	for _, n := range w.moved {
		w.fsys.Remove(filepath.Join(w.dir, n))
	}
	if w.tmp == "" {
		return
	}
	names, _ := w.fsys.List(w.tmp)
	for _, n := range names {
		w.fsys.Remove(filepath.Join(w.tmp, n))
	}
	w.fsys.Remove(w.tmp)
}
