package engine

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

// File names in a DB directory.
const (
	CurrentFile = "CURRENT"
	tmpSuffix   = ".tmp"
	// BrokenSuffix marks damaged files that fallback recovery moved aside.
	BrokenSuffix = ".broken"
)

// DefaultRetain is how many snapshots are kept when Options.Retain is 0.
const DefaultRetain = 3

// DefaultManifestLimit is the manifest size past which it rolls over,
// unless its fresh start was already larger (then four times that).
const DefaultManifestLimit = 4 << 20

// Options configure an Engine.
type Options struct {
	FS            vfs.FS // vfs.OS when nil
	Retain        int    // snapshots kept, at least 1; DefaultRetain when 0
	Level         segment.Level
	ReadOnly      bool         // no lock, no repair, no writes
	Fallback      bool         // fall back to an intact older snapshot
	Logger        *slog.Logger // discards when nil
	ManifestLimit int64        // DefaultManifestLimit when 0
}

// Report says what recovery found and did.
type Report struct {
	// TornTail describes the torn manifest tail that recovery ignored
	// (and, read-write, left behind by starting a new manifest); nil if
	// there was none.
	TornTail error
	// Removed lists orphan files recovery deleted: segments and temp
	// files of saves that crashed before their commit, old manifests.
	Removed []string
	// FellBack is set when the current snapshot was damaged and
	// recovery fell back to an older one (Options.Fallback).
	FellBack bool
	Damaged  uint64   // the damaged snapshot's ID
	Damage   error    // what was wrong with it
	UsedID   uint64   // the snapshot used instead
	Broken   []string // files moved aside, renamed NAME.broken
}

// Engine is an open DB directory.
type Engine struct {
	dir    string
	fs     vfs.FS
	opts   Options
	log    *slog.Logger
	lock   io.Closer
	report Report

	mu      sync.Mutex // guards snaps, readers, closed
	snaps   []manifest.Snapshot
	readers map[uint64]*segReader
	closed  bool

	commitMu sync.Mutex // serialises Commit, Close and rollover
	man      *manifest.Writer
	manFile  vfs.File
	manNum   uint64
	manLimit int64
	nextSeg  uint64
	failed   error // sticky: set when the manifest's state is unknown
}

type segReader struct {
	*segment.Reader
	f vfs.File
}

// Open opens (creating it if needed, unless read-only) and recovers the DB
// in dir.
func Open(dir string, o Options) (*Engine, error) {
	if o.FS == nil {
		o.FS = vfs.OS
	}
	if o.Retain == 0 {
		o.Retain = DefaultRetain
	}
	if o.Retain < 1 {
		return nil, fmt.Errorf("instadump: retain %d snapshots: must be at least 1", o.Retain)
	}
	if o.ManifestLimit <= 0 {
		o.ManifestLimit = DefaultManifestLimit
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{dir: dir, fs: o.FS, opts: o, log: o.Logger.With("dir", dir), readers: map[uint64]*segReader{}}
	if !o.ReadOnly {
		if err := vfs.MkdirAllDurable(e.fs, dir); err != nil {
			return nil, fmt.Errorf("instadump: cannot create DB directory %s: %w", dir, err)
		}
		lock, err := e.fs.Lock(dir)
		if err != nil {
			if errors.Is(err, errs.ErrLocked) {
				return nil, err
			}
			return nil, fmt.Errorf("instadump: cannot lock DB directory %s (is it writable?): %w", dir, err)
		}
		e.lock = lock
	}
	err := e.recover()
	// A read-only open races with the owner's saves: a rollover or a
	// garbage collection may delete a file between reading CURRENT and
	// opening what it names. Start over when that happens, for a while.
	for wait, deadline := time.Millisecond, time.Now().Add(readOnlyRetry); err != nil && o.ReadOnly && errors.Is(err, ErrFileMissing) && time.Now().Before(deadline); wait = min(2*wait, 50*time.Millisecond) {
		time.Sleep(wait)
		e.closeFiles()
		e.snaps, e.report = nil, Report{}
		err = e.recover()
	}
	if err != nil {
		e.closeFiles()
		if e.lock != nil {
			e.lock.Close()
		}
		return nil, err
	}
	return e, nil
}

// readOnlyRetry is how long a read-only open keeps starting over when the
// owner deletes files under it.
const readOnlyRetry = 10 * time.Second

// ErrFileMissing marks a file that a snapshot needs but that is not
// there. It is also ErrCorrupt; to a read-only reader beside a process
// that is saving it can also mean the file was deleted a moment ago.
var ErrFileMissing = errors.New("instadump: file is missing")

func (e *Engine) path(name string) string { return filepath.Join(e.dir, name) }

// openSized opens file name of the directory read-only, with its size.
func (e *Engine) openSized(name string) (vfs.File, int64, error) {
	f, err := e.fs.Open(e.path(name))
	if err != nil {
		return nil, 0, err
	}
	size, err := f.Size()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, size, nil
}

func (e *Engine) readFile(name string) ([]byte, error) {
	f, size, err := e.openSized(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if name == CurrentFile && size > manifest.MaxCurrentSize {
		return nil, errs.Corruptf(e.path(name), manifest.MaxCurrentSize, "CURRENT is %d bytes, more than %d", size, manifest.MaxCurrentSize)
	}
	return vfs.ReadAll(f, size)
}

// dirState is what a listing of the directory says.
type dirState struct {
	names     []string
	segs      map[uint64]string
	manifests map[uint64]string
	maxSeg    uint64
	maxMan    uint64
}

func (e *Engine) list() (*dirState, error) {
	names, err := e.fs.List(e.dir)
	if err != nil {
		return nil, fmt.Errorf("instadump: cannot list DB directory %s: %w", e.dir, err)
	}
	d := &dirState{names: names, segs: map[uint64]string{}, manifests: map[uint64]string{}}
	for _, n := range names {
		if id, ok := segment.ParseFileName(n); ok {
			d.segs[id] = n
			d.maxSeg = max(d.maxSeg, id)
		}
		if num, ok := manifest.ParseFileName(n); ok {
			d.manifests[num] = n
			d.maxMan = max(d.maxMan, num)
		}
	}
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
		for id := range d.segs {
			e.reader(id) // one being written does not open yet: fine
		}
	}
	cur, err := e.readFile(CurrentFile)
	if vfs.IsNotExist(err) {
		return e.recoverFresh(d)
	}
	if err != nil {
		return fmt.Errorf("instadump: reading %s: %w", e.path(CurrentFile), err)
	}
	num, err := manifest.DecodeCurrent(cur, e.path(CurrentFile))
	if err != nil {
		return err
	}
	rep, err := e.replay(num)
	if err != nil {
		return err
	}
	e.manNum = num
	if rep.TailErr != nil {
		e.report.TornTail = rep.TailErr
		e.log.Warn("instadump: ignoring the torn tail of the manifest, left by a crash during a save that was never acknowledged", "err", rep.TailErr)
	}
	snaps := rep.Snapshots
	// Open every retained snapshot's segments now: a reader beside a
	// saving process then holds them before they can be deleted.
	for i := range snaps {
		for _, st := range snaps[i].States {
			e.reader(st.Segment) // errors surface in the checks and reads
		}
	}
	if len(snaps) > 0 {
		if snaps, err = e.checkSnapshots(snaps); err != nil {
			return err
		}
	}
	e.snaps = snaps
	e.nextSeg = d.maxSeg + 1
	for _, s := range snaps {
		e.nextSeg = max(e.nextSeg, s.NextSegment)
		for _, st := range s.States {
			e.nextSeg = max(e.nextSeg, st.Segment+1)
		}
	}
	if e.opts.ReadOnly {
		return nil
	}
	if err := e.removeOrphans(d, num); err != nil {
		return err
	}
	// Never append to a manifest an earlier process wrote: start anew.
	if err := e.rollover(max(num, d.maxMan) + 1); err != nil {
		return err
	}
	return nil
}

// recoverFresh handles a directory without CURRENT: new, or one whose
// first manifest was never named (a crash while it was being created).
func (e *Engine) recoverFresh(d *dirState) error {
	for num, name := range d.manifests {
		if rep, err := e.replayFile(name); err == nil && len(rep.Records) == 0 {
			continue
		}
		// No longer than a header, whatever it holds: no record, so the
		// creation of a first manifest that a crash cut short (its name
		// can be durable before its header is).
		if f, size, err := e.openSized(name); err == nil {
			f.Close()
			if size <= manifest.HeaderSize {
				continue
			}
		}
		return errs.Corruptf(e.path(CurrentFile), 0, "CURRENT is missing but %s (number %d) exists and is not an empty manifest: restore CURRENT from a backup", name, num)
	}
	e.nextSeg = d.maxSeg + 1
	if e.opts.ReadOnly {
		return nil
	}
	if err := e.removeOrphans(d, 0); err != nil {
		return err
	}
	return e.rollover(d.maxMan + 1)
}

func (e *Engine) replayFile(name string) (*manifest.Replayed, error) {
	f, size, err := e.openSized(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return manifest.Replay(f, size, e.path(name), e.opts.Retain)
}

func (e *Engine) replay(num uint64) (*manifest.Replayed, error) {
	name := manifest.FileName(num)
	rep, err := e.replayFile(name)
	if vfs.IsNotExist(err) {
		return nil, errs.CorruptCause(ErrFileMissing, e.path(name), 0, "manifest %s named by CURRENT is missing", name)
	}
	if err != nil {
		return nil, err
	}
	if rep.FileNum != num {
		return nil, errs.Corruptf(e.path(name), 16, "manifest file number %d, file name says %d", rep.FileNum, num)
	}
	return rep, nil
}

// checkSnapshots checks the newest snapshot's segments (and, with
// Fallback, its every value) and returns the snapshots to use.
func (e *Engine) checkSnapshots(snaps []manifest.Snapshot) ([]manifest.Snapshot, error) {
	last := len(snaps) - 1
	bad, err := e.checkSnapshot(&snaps[last], e.opts.Fallback)
	if err == nil {
		return snaps, nil
	}
	if !e.opts.Fallback {
		return nil, err
	}
	for k := last - 1; k >= 0; k-- {
		if _, kerr := e.checkSnapshot(&snaps[k], true); kerr != nil {
			continue
		}
		e.report.FellBack, e.report.Damaged, e.report.Damage, e.report.UsedID = true, snaps[last].ID, err, snaps[k].ID
		e.log.Error("instadump: the current snapshot is damaged; FELL BACK to an older snapshot: every change saved after it is not loaded",
			"damaged", snaps[last].ID, "using", snaps[k].ID, "err", err)
		kept := snaps[:k+1]
		if !e.opts.ReadOnly {
			used := usedSegments(kept)
			for _, name := range bad {
				// A damaged segment that the snapshot used still needs
				// (for values that are intact) stays where it is.
				if id, _ := segment.ParseFileName(name); !used[id] {
					e.moveAside(name)
				}
			}
		}
		return kept, nil
	}
	return nil, fmt.Errorf("%w (fallback found no intact retained snapshot either)", err)
}

// moveAside renames a damaged file to NAME.broken, never deleting it.
func (e *Engine) moveAside(name string) {
	if err := e.fs.Rename(e.path(name), e.path(name+BrokenSuffix)); err != nil {
		e.log.Error("instadump: cannot move a damaged file aside", "file", name, "err", err)
		return
	}
	if id, ok := segment.ParseFileName(name); ok {
		e.mu.Lock()
		if r := e.readers[id]; r != nil {
			r.f.Close()
			delete(e.readers, id)
		}
		e.mu.Unlock()
	}
	e.report.Broken = append(e.report.Broken, name+BrokenSuffix)
	e.log.Warn("instadump: moved a damaged file aside", "file", name+BrokenSuffix)
}

// checkSnapshot checks s (see CheckSnapshot) and returns the names of
// the damaged files and the first problem.
func (e *Engine) checkSnapshot(s *manifest.Snapshot, deep bool) ([]string, error) {
	problems := e.CheckSnapshot(s, deep)
	if len(problems) == 0 {
		return nil, nil
	}
	var bad []string
	for _, p := range problems {
		var ce *errs.CorruptError
		if errors.As(p, &ce) {
			if name := filepath.Base(ce.File); !containsString(bad, name) {
				bad = append(bad, name)
			}
		}
	}
	return bad, problems[0]
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// reader returns the open reader of segment id, opening it if needed.
func (e *Engine) reader(id uint64) (*segReader, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, errs.ErrClosed
	}
	if r := e.readers[id]; r != nil {
		return r, nil
	}
	path := e.path(segment.FileName(id))
	f, err := e.fs.Open(path)
	if vfs.IsNotExist(err) {
		return nil, errs.CorruptCause(ErrFileMissing, path, 0, "segment %s is missing, though a retained snapshot references it", segment.FileName(id))
	}
	if err != nil {
		return nil, fmt.Errorf("instadump: opening segment %s: %w", path, err)
	}
	size, err := f.Size()
	if err == nil {
		var r *segment.Reader
		if r, err = segment.Open(f, size, path); err == nil {
			if r.ID() != id {
				err = errs.Corruptf(path, 16, "segment file holds segment ID %d", r.ID())
			} else {
				sr := &segReader{Reader: r, f: f}
				e.readers[id] = sr
				return sr, nil
			}
		}
	}
	f.Close()
	return nil, err
}

// removeOrphans deletes what no retained snapshot needs: segments they
// don't reference, temp files, manifests other than keep.
func (e *Engine) removeOrphans(d *dirState, keep uint64) error {
	used := usedSegments(e.snaps)
	var removed []string
	for _, n := range d.names {
		id, isSeg := segment.ParseFileName(n)
		num, isMan := manifest.ParseFileName(n)
		orphan := (isSeg && !used[id]) || (isMan && num != keep) || strings.HasSuffix(n, tmpSuffix)
		if !orphan {
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

// usedSegments returns the segments snaps reference.
func usedSegments(snaps []manifest.Snapshot) map[uint64]bool {
	used := map[uint64]bool{}
	for i := range snaps {
		for _, st := range snaps[i].States {
			used[st.Segment] = true
		}
	}
	return used
}

// rollover starts manifest file number num holding the retained
// snapshots, makes CURRENT name it, and removes the old manifest.
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
		e.fs.Remove(e.path(CurrentFile + tmpSuffix))
		return err
	}
	w, err := manifest.Create(f, num)
	if err != nil {
		return abandon(fmt.Errorf("instadump: writing manifest %s: %w", path, err))
	}
	e.mu.Lock()
	for i := range e.snaps {
		e.snaps[i].Retained = e.snaps[0].ID
	}
	e.mu.Unlock()
	for i := range e.snaps {
		var rec manifest.Record
		if i == 0 {
			rec = manifest.FullRecord(&e.snaps[0])
		} else {
			rec = manifest.Diff(&e.snaps[i-1], &e.snaps[i])
		}
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
	if err := e.writeCurrent(num); err != nil {
		return abandon(err)
	}
	// From the rename on, which CURRENT is durable is unknown until the
	// directory sync succeeds: a failure is sticky.
	if err := e.fs.Rename(e.path(CurrentFile+tmpSuffix), e.path(CurrentFile)); err != nil {
		f.Close()
		return e.fail(fmt.Errorf("instadump: renaming %s over CURRENT in %s: %w", CurrentFile+tmpSuffix, e.dir, err))
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
	if oldNum != 0 && oldNum != num {
		oldName := manifest.FileName(oldNum)
		if e.report.FellBack {
			// It holds the records of the damaged snapshots: keep it.
			e.moveAside(oldName)
		} else if err := e.fs.Remove(e.path(oldName)); err != nil && !vfs.IsNotExist(err) {
			e.log.Warn("instadump: cannot remove the old manifest; it will be removed at the next open", "file", oldName, "err", err)
		}
	}
	return nil
}

func (e *Engine) writeCurrent(num uint64) error {
	tmp := e.path(CurrentFile + tmpSuffix)
	f, err := e.fs.Create(tmp)
	if err != nil {
		return fmt.Errorf("instadump: creating %s: %w", tmp, err)
	}
	_, err = f.Write(manifest.EncodeCurrent(num))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("instadump: writing %s: %w", tmp, err)
	}
	return nil
}

// fail makes err sticky: every later Commit returns it.
func (e *Engine) fail(err error) error {
	if e.failed == nil {
		e.failed = fmt.Errorf("%w (the DB refuses writes until it is reopened; reopening recovers the last committed snapshot)", err)
		e.log.Error("instadump: write failure; refusing writes until reopened", "err", err)
	}
	return e.failed
}

// Report returns what recovery found and did.
func (e *Engine) Report() Report { return e.report }

// Dir returns the directory.
func (e *Engine) Dir() string { return e.dir }

// Current returns the current snapshot, or false if there is none.
func (e *Engine) Current() (manifest.Snapshot, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.snaps) == 0 {
		return manifest.Snapshot{}, false
	}
	return e.snaps[len(e.snaps)-1], true
}

// Snapshots returns the retained snapshots, oldest first. Their maps are
// shared: don't modify them.
func (e *Engine) Snapshots() []manifest.Snapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]manifest.Snapshot(nil), e.snaps...)
}

// Snapshot returns retained snapshot id.
func (e *Engine) Snapshot(id uint64) (manifest.Snapshot, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.snaps {
		if s.ID == id {
			return s, true
		}
	}
	return manifest.Snapshot{}, false
}

// Read returns the verified raw bytes of the value ref locates.
func (e *Engine) Read(ref manifest.StateRef) ([]byte, error) {
	r, err := e.reader(ref.Segment)
	if err != nil {
		return nil, err
	}
	return r.Read(ref.Entry)
}

func (e *Engine) closeFiles() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var first error
	for id, r := range e.readers {
		if err := r.f.Close(); err != nil && first == nil {
			first = err
		}
		delete(e.readers, id)
	}
	if e.manFile != nil {
		if err := e.manFile.Close(); err != nil && first == nil {
			first = err
		}
		e.manFile = nil
	}
	return first
}

// Close closes the files and releases the lock. Later calls return
// ErrClosed.
func (e *Engine) Close() error {
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return errs.ErrClosed
	}
	e.mu.Unlock()
	err := e.closeFiles()
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	if e.lock != nil {
		if lerr := e.lock.Close(); err == nil {
			err = lerr
		}
	}
	return err
}
