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
	// currentTmp is the engine's only temporary file: CURRENT's
	// replacement before its rename.
	currentTmp = CurrentFile + ".tmp"
	// BrokenSuffix marks damaged files that fallback recovery moved aside.
	BrokenSuffix = ".broken"
)

// DefaultRetain is how many snapshots are kept when Options.Retain is 0.
const DefaultRetain = 3

// DefaultManifestLimit is the manifest size past which it rolls over,
// unless its fresh start was already larger (then four times that).
const DefaultManifestLimit = 4 << 20

// FS is the filesystem the engine writes through; File is a file of it.
// Nil in Options means the operating system's. Tests put crashable and
// failing ones under the engine; see the contract of each method in
// their documentation.
type (
	FS   = vfs.FS
	File = vfs.File
)

// Options configure an Engine.
type Options struct {
	FS            FS           // the operating system's when nil
	Retain        int          // snapshots kept, at least 1; DefaultRetain when 0
	Level         Level        // compression of new segments
	ReadOnly      bool         // no lock, no repair, no writes: for tools
	Fallback      bool         // fall back to an intact older snapshot
	Logger        *slog.Logger // discards when nil
	ManifestLimit int64        // DefaultManifestLimit when 0
	// ReadAhead is how many bytes of the current snapshot's values may
	// be read ahead after Open, for the loads to come (readahead.go);
	// 0 turns it off.
	ReadAhead int64

	Replica ReplicaOptions // ship committed snapshots off the machine (ship.go)
}

// Report says what recovery found and did.
type Report struct {
	// TornTail describes the torn manifest tail that recovery ignored
	// (and, read-write, left behind by starting a new manifest); nil if
	// there was none.
	TornTail error
	// DamagedTail describes a last manifest record that is complete but
	// fails its checksum: damage, not a torn write, and its snapshot may
	// have been acknowledged. Without Options.Fallback, Open fails with
	// this error. With it, recovery falls back to the snapshot before it
	// (FellBack, with Damaged 0, since the record's ID cannot be read);
	// read-write, it moves aside the segments no retained snapshot uses
	// (that record may name them) and the manifest holding it. Nil if
	// there was none.
	DamagedTail error
	// Removed lists the leftover files recovery deleted: segments and
	// temporary files of saves that crashed before their commit, old
	// manifests.
	Removed []string
	// FellBack is set when the current snapshot was damaged and
	// recovery fell back to an older one (Options.Fallback).
	FellBack bool
	Damaged  uint64   // the damaged snapshot's ID; 0 if the manifest itself (or its last record) was unreadable
	Damage   error    // what was wrong with it
	UsedID   uint64   // the snapshot used instead; 0 if none
	Broken   []string // files moved aside, renamed NAME.broken, never deleted
}

// Engine is an open DB directory. Its methods are safe for concurrent
// use; commits are serialised.
type Engine struct {
	dir    string
	fs     FS
	opts   Options
	log    *slog.Logger
	lock   io.Closer
	report Report

	mu      sync.Mutex // guards what follows, up to commitMu
	snaps   []*snap    // retained, oldest first; the last is current
	cur     map[string]Ref
	readers map[uint64]*segReader
	live    liveBytes
	closed  bool
	records *manifest.Log // read-only opens: the manifest as replayed
	ra      *readAhead    // nil when off; set by Open

	commitMu    sync.Mutex // serialises Commit, Close and rollover
	man         *manifest.Writer
	manFile     File
	manNum      uint64
	manLimit    int64
	lin         *Lineage // the new lineage this open made (lineage), if it did
	nextSeg     uint64
	compact     bool   // the next commit rewrites every live value
	compactedAt uint64 // the snapshot of the last compaction
	failed      error  // sticky: set when the manifest's state is unknown
	// asideMan is the manifest recovery read from when it holds records
	// that were not loaded (damaged, or of snapshots a fallback dropped):
	// the rollover that replaces it moves it aside, once, instead of
	// removing it. 0 when there is none.
	asideMan uint64
	// tolerateMissing: a read-only open retrying for long lets a segment
	// only an older snapshot uses be missing (holdRetained).
	tolerateMissing bool

	ship *shipper // nil unless Options.Replica has a Store
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
		return nil, fmt.Errorf("%w: retain %d snapshots: must be at least 1", errs.ErrBadOption, o.Retain)
	}
	if o.Level < LevelFastest || o.Level > LevelNone {
		return nil, fmt.Errorf("%w: unknown compression level %d: use one of the Level constants", errs.ErrBadOption, o.Level)
	}
	if err := o.checkReplica(dir); err != nil {
		return nil, err
	}
	if o.FS == vfs.OS && !filepath.IsAbs(dir) {
		// Every file is named from dir: a relative one would follow the
		// process's working directory when it changes.
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("instadump: DB directory %s: %w", dir, err)
		}
		dir = abs
	}
	if o.ManifestLimit <= 0 {
		o.ManifestLimit = DefaultManifestLimit
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{dir: dir, fs: o.FS, opts: o, log: o.Logger.With("dir", dir)}
	e.reset()
	if !o.ReadOnly {
		if err := vfs.MkdirAllDurable(e.fs, dir); err != nil {
			return nil, errs.NoSpace("open", dir, fmt.Errorf("instadump: cannot create DB directory %s: %w", dir, err))
		}
		lock, err := e.fs.Lock(dir)
		if err != nil {
			if errors.Is(err, errs.ErrLocked) {
				return nil, err
			}
			return nil, errs.NoSpace("open", dir, fmt.Errorf("instadump: cannot lock DB directory %s (is it writable?): %w", dir, err))
		}
		e.lock = lock
	}
	err := e.recover()
	// A read-only open races with the owner's saves: a rollover or a
	// garbage collection may delete a file between reading CURRENT and
	// opening what it names. Start over when that happens, for a while,
	// as long as the directory changes between attempts: when it does
	// not, the file is missing, not deleted under the open (tolerated
	// once, for a segment only an older snapshot uses: holdRetained).
	var seen string
	for wait, deadline := time.Millisecond, time.Now().Add(readOnlyRetry); err != nil && o.ReadOnly && errors.Is(err, errs.ErrMissing) && time.Now().Before(deadline); wait = min(2*wait, 50*time.Millisecond) {
		now, ok := e.attempt(err)
		if ok && now == seen {
			if e.tolerateMissing {
				break
			}
			e.tolerateMissing = true
		}
		seen = now
		time.Sleep(wait)
		e.tolerateMissing = e.tolerateMissing || time.Until(deadline) < readOnlyRetry/2
		e.closeFiles()
		e.reset()
		err = e.recover()
	}
	if err != nil {
		e.closeFiles()
		if e.lock != nil {
			e.lock.Close()
		}
		// Recovery writes (a new manifest, CURRENT): a full disk is
		// said so, with what to do.
		return nil, errs.NoSpace("open", dir, err)
	}
	if o.Replica.Store != nil {
		if err := e.startShipper(); err != nil {
			e.Close()
			return nil, err
		}
	}
	e.startReadAhead()
	return e, nil
}

// attempt describes a failed read-only recovery: the names in the
// directory and the error. Two alike, one after the other, mean the owner
// changed nothing in between.
// A directory that does not list is not described (false).
func (e *Engine) attempt(err error) (string, bool) {
	names, lerr := e.fs.List(e.dir)
	if lerr != nil {
		return "", false
	}
	return strings.Join(names, "/") + "\x00" + err.Error(), true
}

// readOnlyRetry is how long a read-only open keeps starting over when the
// owner deletes files under it.
const readOnlyRetry = 10 * time.Second

// reset empties what recovery fills.
func (e *Engine) reset() {
	e.snaps, e.cur, e.records = nil, map[string]Ref{}, nil
	e.readers = map[uint64]*segReader{}
	e.live = liveBytes{}
	e.report = Report{}
}

func (e *Engine) path(name string) string { return filepath.Join(e.dir, name) }

// Report returns what recovery found and did.
func (e *Engine) Report() Report { return e.report }

// Dir returns the directory.
func (e *Engine) Dir() string { return e.dir }

// ReadOnly says whether the engine was opened read-only.
func (e *Engine) ReadOnly() bool { return e.opts.ReadOnly }

// fail makes err sticky: every later Commit returns it.
func (e *Engine) fail(err error) error {
	if e.failed == nil {
		e.failed = fmt.Errorf("%w (the DB refuses writes until it is reopened; reopening recovers the last committed snapshot)", err)
		e.log.Error("instadump: write failure; refusing writes until reopened", "err", err)
	}
	return e.failed
}

func (e *Engine) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
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
// ErrClosed, as do reads of values not yet read.
func (e *Engine) Close() error {
	e.stopShipper()
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return errs.ErrClosed
	}
	e.closed = true
	e.mu.Unlock()
	e.stopReadAhead()
	err := e.closeFiles()
	if e.lock != nil {
		if lerr := e.lock.Close(); err == nil {
			err = lerr
		}
	}
	return err
}

// Level is a compression level of new segments.
type Level = segment.Level

// Compression levels. LevelFastest is the default.
const (
	LevelFastest = segment.LevelFastest
	LevelDefault = segment.LevelDefault
	LevelBetter  = segment.LevelBetter
	LevelBest    = segment.LevelBest
	LevelNone    = segment.LevelNone
)
