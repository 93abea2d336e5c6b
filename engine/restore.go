package engine

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
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

// ErrNoSnapshot reports a store that holds no complete snapshot, or not
// the one asked for.
var ErrNoSnapshot = errors.New("instadump: no such snapshot in the replica")

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
// restored from the snapshot's, syncs them all, and renames the
// directory into place. On failure it removes the temporary directory
// and leaves nothing; a crash may leave the temporary directory, never a
// partial dir.
func Restore(ctx context.Context, st replica.Store, dir string, o RestoreOptions) (Snapshot, error) {
	fsys := o.FS
	if fsys == nil {
		fsys = vfs.OS
	}
	dir = filepath.Clean(dir)
	if names, err := fsys.List(dir); err == nil && len(names) > 0 {
		return Snapshot{}, fmt.Errorf("instadump: restore into %s: the directory is not empty: restore into a new directory", dir)
	} else if err != nil && !vfs.IsNotExist(err) {
		return Snapshot{}, fmt.Errorf("instadump: restore into %s: %w", dir, err)
	}
	loc, err := readLocation(ctx, st)
	if err != nil {
		return Snapshot{}, fmt.Errorf("instadump: restore from %s: %w", st, err)
	}
	e, err := loc.pick(o.ID, o.Before)
	if err != nil {
		return Snapshot{}, err
	}
	chain, err := loc.chain(e)
	if err != nil {
		return Snapshot{}, fmt.Errorf("instadump: restore of snapshot %d from %s: %w", e.id, st, err)
	}
	states, err := loc.fold(e, chain)
	if err != nil {
		return Snapshot{}, fmt.Errorf("instadump: restore of snapshot %d from %s: %w", e.id, st, err)
	}
	c := e.obj.c
	snap := Snapshot{ID: c.Snapshot, Time: c.Record.Time, States: len(states), Written: c.Record.Written}
	nextSeg := c.Record.NextSegment
	for _, sg := range c.Segments {
		nextSeg = max(nextSeg, sg.ID+1)
	}
	w := &restoreWriter{fsys: fsys, dir: dir}
	if err := w.write(ctx, loc, e, states, snap, nextSeg); err != nil {
		w.abandon()
		return Snapshot{}, fmt.Errorf("instadump: restore of snapshot %d from %s into %s: %w", e.id, st, dir, err)
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
			return entry{}, fmt.Errorf("%w: %s holds no replicated DB", ErrNoSnapshot, loc.st)
		}
		return entry{}, fmt.Errorf("%w: %s holds no snapshot yet", ErrNoSnapshot, loc.st)
	}
	if id != 0 {
		for _, e := range tl {
			if e.id == id {
				if err := loc.complete(e); err != nil {
					return entry{}, fmt.Errorf("instadump: snapshot %d of %s cannot be restored: %w", id, loc.st, err)
				}
				return e, nil
			}
		}
		return entry{}, fmt.Errorf("%w: %s has no snapshot %d (it has %s)", ErrNoSnapshot, loc.st, id, idList(tl))
	}
	var first error
	for _, e := range slices.Backward(tl) {
		if e.obj.c == nil || (!before.IsZero() && e.obj.c.Record.Time.After(before)) {
			continue
		}
		if err := loc.complete(e); err != nil {
			first = cmp(first, err)
			continue
		}
		return e, nil
	}
	what := "no complete snapshot"
	if !before.IsZero() {
		what = "no complete snapshot saved at or before " + before.UTC().Format(time.RFC3339Nano)
	}
	if first != nil {
		return entry{}, fmt.Errorf("%w: %s has %s (it has %s; the newest fails with: %w)", ErrNoSnapshot, loc.st, what, idList(tl), first)
	}
	return entry{}, fmt.Errorf("%w: %s has %s (it has %s)", ErrNoSnapshot, loc.st, what, idList(tl))
}

func cmp(first, err error) error {
	if first == nil {
		return err
	}
	return first
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
	fsys FS
	dir  string
	tmp  string
}

func (w *restoreWriter) write(ctx context.Context, loc *location, e entry, states map[string]Ref, snap Snapshot, nextSeg uint64) error {
	parent := filepath.Dir(w.dir)
	if err := vfs.MkdirAllDurable(w.fsys, parent); err != nil {
		return fmt.Errorf("creating %s: %w", parent, err)
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	w.tmp = filepath.Join(parent, "."+filepath.Base(w.dir)+".restore-"+hex.EncodeToString(rnd[:]))
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
	// A new lineage: saving on, the restored DB is a new history.
	lin := Lineage{Parent: e.lin.id, Fork: snap.ID}
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
	if err := w.fsys.Remove(w.dir); err != nil && !vfs.IsNotExist(err) { // empty, checked before
		return fmt.Errorf("replacing the empty directory %s: %w", w.dir, err)
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

// file writes name in the temporary directory with fill, and syncs it.
func (w *restoreWriter) file(name string, fill func(f File) error) error {
	path := filepath.Join(w.tmp, name)
	f, err := w.fsys.Create(path)
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

// abandon removes what a failed restore wrote.
func (w *restoreWriter) abandon() {
	if w.tmp == "" {
		return
	}
	names, _ := w.fsys.List(w.tmp)
	for _, n := range names {
		w.fsys.Remove(filepath.Join(w.tmp, n))
	}
	w.fsys.Remove(w.tmp)
}

// download copies object key, of size bytes, into a file made by
// create, made anew (empty) each time a failure that may pass interrupts
// the copy, through buf. It returns the file, open.
func download(ctx context.Context, st replica.Store, key string, size int64, create func() (File, error), buf []byte) (File, error) {
	var f File
	err := withRetry(ctx, func() error {
		if f != nil {
			f.Close()
		}
		var err error
		if f, err = create(); err != nil {
			return err
		}
		rc, err := st.Get(ctx, key)
		if err != nil {
			return err
		}
		defer rc.Close()
		n, err := io.CopyBuffer(onlyWriter{f}, io.LimitReader(rc, size), buf)
		if err != nil {
			return fmt.Errorf("downloading %s: %w", where(st, key), err)
		}
		if n < size {
			return errs.Corruptf(where(st, key), n, "the object ends after %d of its %d bytes", n, size)
		}
		if m, _ := rc.Read(buf[:1]); m > 0 {
			return errs.Corruptf(where(st, key), size, "the object is longer than its %d bytes", size)
		}
		return nil
	})
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, err
	}
	return f, nil
}

// onlyWriter hides any ReadFrom of its Writer, so that io.CopyBuffer
// copies through the given buffer.
type onlyWriter struct{ io.Writer }

// checkSegment opens and verifies the segment sg in r: its header,
// trailer and index, its ID and tag, and every value.
func checkSegment(r io.ReaderAt, sg replica.SegmentRef, name string) (*segment.Reader, error) {
	sr, err := segment.Open(r, sg.Size, name)
	if err != nil {
		return nil, err
	}
	if sr.ID() != sg.ID {
		return nil, errs.Corruptf(name, 16, "the file holds segment %d, not %d", sr.ID(), sg.ID)
	}
	var b [8]byte
	if _, err := r.ReadAt(b[:], sg.Size-segment.TrailerSize+32); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if tag := binary.LittleEndian.Uint64(b[:]); tag != sg.Tag {
		return nil, errs.CorruptCause(errs.ErrChecksum, name, sg.Size-segment.TrailerSize+32, "the segment's tag is %016x, its key says %016x", tag, sg.Tag)
	}
	if err := sr.Verify(); err != nil {
		return nil, err
	}
	return sr, nil
}

// checkLocs checks that segment id (read by r) holds every value of
// states located in it, as the records say.
func checkLocs(r *segment.Reader, id uint64, states map[string]Ref, name string) error {
	for _, st := range states {
		var err error
		locs(&st, func(l *Loc) {
			if err != nil || l.Segment != id {
				return
			}
			want := segment.Entry{Name: l.Name, Offset: l.Offset, StoredLen: l.StoredLen, RawLen: l.RawLen, StoredSum: l.StoredSum, RawSum: l.RawSum}
			if got, ok := r.Find(l.Name); !ok || got != want {
				err = errs.Corruptf(name, l.Offset, "state %q has a value at offset %d (%d bytes), the records say, but the segment's index does not agree", st.Name, l.Offset, l.StoredLen)
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// ReplicaSnapshot describes a snapshot in a store.
type ReplicaSnapshot struct {
	ID       uint64
	Time     time.Time
	Lineage  string
	Full     bool     // its commit object holds the whole snapshot (not a delta)
	States   int      // how many states it holds; -1 if unknown
	Bytes    int64    // of the segments it uses
	Segments []uint64 // the segments it uses
	// Problem says why it cannot be restored (an object missing or
	// damaged, as far as listing and commit objects tell); nil if it can.
	Problem error
	// states, when known, and its lineage's objects.
	states map[string]Ref
	lin    *lineageObjs
	segs   []replica.SegmentRef
}

// ReplicaSnapshots lists the snapshots of the DB replicated in st, oldest
// first: the timeline of its owner (see package replica's doc). It reads
// every commit object, none of the segments. A location no DB replicates
// to is an error wrapping ErrNoSnapshot.
func ReplicaSnapshots(ctx context.Context, st replica.Store) ([]ReplicaSnapshot, error) {
	loc, err := readLocation(ctx, st)
	if err != nil {
		return nil, err
	}
	if len(loc.owners) == 0 {
		return nil, fmt.Errorf("%w: %s holds no replicated DB", ErrNoSnapshot, st)
	}
	var out []ReplicaSnapshot
	for _, e := range loc.timeline() {
		rs := ReplicaSnapshot{ID: e.id, Lineage: e.lin.id.String(), States: -1, lin: e.lin}
		if c := e.obj.c; c != nil {
			rs.Time, rs.Full, rs.segs = c.Record.Time, c.Full(), c.Segments
			for _, sg := range c.Segments {
				rs.Bytes += sg.Size
				rs.Segments = append(rs.Segments, sg.ID)
			}
		}
		chain, err := loc.chain(e)
		if err == nil {
			rs.states, err = loc.fold(e, chain)
			rs.States = len(rs.states)
		}
		if err == nil {
			err = loc.complete(e)
		}
		rs.Problem = err
		out = append(out, rs)
	}
	return out, nil
}

// VerifyReplica checks every snapshot of the DB replicated in st as
// Restore would, without writing a DB: every commit object and link,
// and every segment downloaded (once, into a temporary file) and
// checked byte by byte. It returns the snapshots and every problem
// found, each naming the object. progress, if not nil, is called as
// segment bytes are checked.
func VerifyReplica(ctx context.Context, st replica.Store, progress func(done, total int64)) ([]ReplicaSnapshot, []error) {
	snaps, err := ReplicaSnapshots(ctx, st)
	if err != nil {
		return nil, []error{err}
	}
	var problems []error
	type seg struct {
		lin *lineageObjs
		ref replica.SegmentRef
	}
	var todo []seg
	seen := map[string]bool{}
	var total, done int64
	for _, s := range snaps {
		if s.Problem != nil {
			problems = append(problems, fmt.Errorf("snapshot %d: %w", s.ID, s.Problem))
			continue
		}
		for _, sg := range s.segs {
			if key := replica.SegmentKey(s.lin.id, sg); !seen[key] {
				seen[key] = true
				todo = append(todo, seg{s.lin, sg})
				total += sg.Size
			}
		}
	}
	bad := map[string]bool{}
	buf := make([]byte, 1<<20)
	for _, sg := range todo {
		key := replica.SegmentKey(sg.lin.id, sg.ref)
		err := verifySegment(ctx, st, key, sg.ref, snaps, buf)
		if err != nil {
			bad[key] = true
			problems = append(problems, err)
			if ctx.Err() != nil {
				return snaps, problems
			}
		}
		done += sg.ref.Size
		if progress != nil {
			progress(done, total)
		}
	}
	for i := range snaps {
		s := &snaps[i]
		if s.Problem != nil {
			continue
		}
		for _, sg := range s.segs {
			if key := replica.SegmentKey(s.lin.id, sg); bad[key] {
				s.Problem = errs.Corruptf(where(st, key), 0, "snapshot %d uses a damaged segment", s.ID)
				break
			}
		}
	}
	return snaps, problems
}

// verifySegment downloads one segment into a temporary file and checks
// it, and the values every snapshot using it locates in it.
func verifySegment(ctx context.Context, st replica.Store, key string, ref replica.SegmentRef, snaps []ReplicaSnapshot, buf []byte) error {
	tmp, err := os.CreateTemp("", "instadump-verify-*.seg")
	if err != nil {
		return err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	f, err := download(ctx, st, key, ref.Size, func() (File, error) { return vfs.OS.Create(tmp.Name()) }, buf)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := checkSegment(f, ref, where(st, key))
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if s.Problem == nil && s.states != nil && slices.Contains(s.segs, ref) {
			if err := checkLocs(r, ref.ID, s.states, where(st, key)); err != nil {
				return fmt.Errorf("snapshot %d: %w", s.ID, err)
			}
		}
	}
	return nil
}
