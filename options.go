package instadump

import (
	"log/slog"
	"time"

	"github.com/instadump/instadump/engine"
)

// Option configures Open and Setup.
type Option func(*options)

type options struct {
	retain      int
	retainSet   bool // WithRetain was given, perhaps with a bad n
	autoSave    time.Duration
	saveOnClose bool
	level       Level
	logger      *slog.Logger
	readOnly    bool
	fallback    bool
	fs          engine.FS

	replica engine.ReplicaOptions // WithReplica and its options (replicate.go)
}

// Level is a compression level for WithCompression.
type Level = engine.Level

// Compression levels. LevelFastest is the default.
const (
	LevelFastest = engine.LevelFastest
	LevelDefault = engine.LevelDefault
	LevelBetter  = engine.LevelBetter
	LevelBest    = engine.LevelBest
	LevelNone    = engine.LevelNone
)

// WithRetain keeps the n most recent snapshots (default 3, at least 1).
// Older ones are dropped, and their data deleted, as new ones are saved.
func WithRetain(n int) Option { return func(o *options) { o.retain, o.retainSet = n, true } }

// WithAutoSave saves in the background every interval, when something
// changed since the last save. Errors go to the logger and to
// DB.AutoSaveErr.
func WithAutoSave(interval time.Duration) Option {
	return func(o *options) { o.autoSave = interval }
}

// WithSaveOnClose makes Close save first, when something changed.
func WithSaveOnClose() Option { return func(o *options) { o.saveOnClose = true } }

// WithCompression sets the zstd level of new segments (LevelNone stores
// values uncompressed).
func WithCompression(level Level) Option { return func(o *options) { o.level = level } }

// WithLogger sends instadump's log (recovery, auto-save errors, fallback,
// values changed in place) to l. By default nothing is logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithReadOnly opens without the lock, repairs nothing and writes
// nothing: for tools that look at a DB another process may have open.
// States can be registered and read; Save returns ErrReadOnly. A
// directory that holds no DB is ErrNotDB. With WithAutoSave,
// WithSaveOnClose or WithReplica, which only a saving DB can do, Open
// fails with ErrBadOption.
//
// A read-only DB never moves forward: it holds the snapshots as they were
// when it was opened. Snapshots, Reload and ReloadFrom see those, not the
// snapshots the writing process saves later; to see newer ones, Close
// and Open again.
func WithReadOnly() Option { return func(o *options) { o.readOnly = true } }

// WithFallback makes Open, when the current snapshot's data is damaged,
// load the newest retained snapshot whose data is intact instead of
// failing; when CURRENT or the manifest is damaged, it uses the newest
// manifest (or the part of it before the damage) that reads; when the
// manifest's last commit record is damaged (Recovery.DamagedTail), the
// snapshot before it. It logs an error, reports it in DB.Recovery, and
// moves the damaged files, and any segment no retained snapshot uses,
// aside (renamed NAME.broken), never deleting them. Open reads and
// checks every value of the current snapshot to find damage.
func WithFallback() Option { return func(o *options) { o.fallback = true } }

// WithFS runs the DB over fsys instead of the operating system's
// filesystem: for tests that put a crashable or failing filesystem under
// instadump. See engine.FS for what the engine needs of it.
func WithFS(fsys engine.FS) Option { return func(o *options) { o.fs = fsys } }
