package vfs

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"

	"github.com/instadump/instadump/internal/flags"
)

// OpKind is a kind of filesystem operation, as a bit so that several can
// be chosen at once.
type OpKind uint32

// The kinds of operation ErrorFS sees.
const (
	OpCreate OpKind = 1 << iota
	OpOpen
	OpRead
	OpWrite
	OpSync
	OpRename
	OpRemove
	OpList
	OpMkdir
	OpSyncDir
	OpLock
	OpClose

	// OpMutating is every operation that changes what is on disk.
	OpMutating = OpCreate | OpWrite | OpSync | OpRename | OpRemove | OpMkdir | OpSyncDir
	// OpAll is every operation.
	OpAll = OpClose<<1 - 1
)

var opNames = []string{"create", "open", "read", "write", "sync", "rename", "remove", "list", "mkdir", "syncdir", "lock", "close"}

func (k OpKind) String() string {
	return flags.Names(k, opNames)
}

// Op describes one operation.
type Op struct {
	Kind OpKind
	Path string
}

// Injector decides whether an operation fails, and with what error. It is
// called before the operation runs, and must be safe for concurrent use.
type Injector interface {
	MaybeError(op Op) error
}

// ShortWrite wraps an injected write error to make the write keep the
// first half of its bytes before it fails, as a full disk does.
func ShortWrite(err error) error { return shortWrite{err} }

type shortWrite struct{ error }

func (s shortWrite) Unwrap() error { return s.error }

// Common injected errors.
var (
	ENOSPC = syscall.ENOSPC
	EIO    = syscall.EIO
)

// Nth fails the N-th (1-based) operation of the chosen kinds with Err, and
// with All set every later one of those kinds too. It counts every
// operation of those kinds it sees, so a test can run a workload once with
// N = 0 (no failure) to learn how many there are, then loop N over them.
type Nth struct {
	Kinds OpKind
	N     int64
	Err   error
	All   bool // fail every matching operation from the N-th on
	Short bool // an injected write first writes half its bytes

	mu    sync.Mutex
	count int64
	fired int64
}

// MaybeError implements Injector.
func (n *Nth) MaybeError(op Op) error {
	if op.Kind&n.Kinds == 0 {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.count++
	if n.N <= 0 || n.count < n.N || (n.count > n.N && !n.All) {
		return nil
	}
	n.fired++
	err := fmt.Errorf("injected %s error on %s (operation %d): %w", op.Kind, op.Path, n.count, n.Err)
	if n.Short && op.Kind == OpWrite {
		return ShortWrite(err)
	}
	return err
}

// Count returns how many matching operations were seen.
func (n *Nth) Count() int64 { n.mu.Lock(); defer n.mu.Unlock(); return n.count }

// Fired returns how many errors were injected.
func (n *Nth) Fired() int64 { n.mu.Lock(); defer n.mu.Unlock(); return n.fired }

// InjectorFunc adapts a function to Injector.
type InjectorFunc func(Op) error

// MaybeError implements Injector.
func (f InjectorFunc) MaybeError(op Op) error { return f(op) }

// ErrorFS wraps an FS and fails the operations its Injector chooses.
type ErrorFS struct {
	fs  FS
	inj Injector
}

// WithErrors returns fs wrapped so that inj can fail any operation.
func WithErrors(fs FS, inj Injector) *ErrorFS { return &ErrorFS{fs: fs, inj: inj} }

func (e *ErrorFS) maybe(k OpKind, path string) error {
	return e.inj.MaybeError(Op{Kind: k, Path: path})
}

// Create implements FS.
func (e *ErrorFS) Create(name string) (File, error) {
	if err := e.maybe(OpCreate, name); err != nil {
		return nil, err
	}
	f, err := e.fs.Create(name)
	if err != nil {
		return nil, err
	}
	return &errFile{f: f, e: e, name: name}, nil
}

func (e *ErrorFS) open(name string, open func(string) (File, error)) (File, error) {
	if err := e.maybe(OpOpen, name); err != nil {
		return nil, err
	}
	f, err := open(name)
	if err != nil {
		return nil, err
	}
	return &errFile{f: f, e: e, name: name}, nil
}

// Open implements FS.
func (e *ErrorFS) Open(name string) (File, error) { return e.open(name, e.fs.Open) }

// Rename implements FS.
func (e *ErrorFS) Rename(oldname, newname string) error {
	if err := e.maybe(OpRename, newname); err != nil {
		return err
	}
	return e.fs.Rename(oldname, newname)
}

// Remove implements FS.
func (e *ErrorFS) Remove(name string) error {
	if err := e.maybe(OpRemove, name); err != nil {
		return err
	}
	return e.fs.Remove(name)
}

// List implements FS.
func (e *ErrorFS) List(dir string) ([]string, error) {
	if err := e.maybe(OpList, dir); err != nil {
		return nil, err
	}
	return e.fs.List(dir)
}

// MkdirAll implements FS.
func (e *ErrorFS) MkdirAll(dir string) error {
	if err := e.maybe(OpMkdir, dir); err != nil {
		return err
	}
	return e.fs.MkdirAll(dir)
}

// SyncDir implements FS.
func (e *ErrorFS) SyncDir(dir string) error {
	if err := e.maybe(OpSyncDir, dir); err != nil {
		return err
	}
	return e.fs.SyncDir(dir)
}

// Lock implements FS.
func (e *ErrorFS) Lock(dir string) (io.Closer, error) {
	if err := e.maybe(OpLock, dir); err != nil {
		return nil, err
	}
	return e.fs.Lock(dir)
}

type errFile struct {
	f    File
	e    *ErrorFS
	name string
}

func (f *errFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.e.maybe(OpRead, f.name); err != nil {
		return 0, err
	}
	return f.f.ReadAt(p, off)
}

func (f *errFile) write(p []byte, do func([]byte) (int, error)) (int, error) {
	if err := f.e.maybe(OpWrite, f.name); err != nil {
		var sw shortWrite
		if errors.As(err, &sw) {
			n, werr := do(p[:len(p)/2])
			if werr != nil {
				return n, werr
			}
			return n, sw.error
		}
		return 0, err
	}
	return do(p)
}

func (f *errFile) Write(p []byte) (int, error) { return f.write(p, f.f.Write) }

// syncFailer is a File that can model what a failed fsync does to its
// unsynced data (MemFS's files, and ErrorFS's around them).
type syncFailer interface{ syncFailed() }

// Sync fails as the Injector chooses. An injected failure is not kind:
// the file underneath is told, and (a MemFS) settles the unsynced writes
// then and there, so that a retried Sync cannot make lost data durable.
func (f *errFile) Sync() error {
	if err := f.e.maybe(OpSync, f.name); err != nil {
		f.syncFailed()
		return err
	}
	return f.f.Sync()
}

func (f *errFile) syncFailed() {
	if sf, ok := f.f.(syncFailer); ok {
		sf.syncFailed()
	}
}

func (f *errFile) Size() (int64, error) { return f.f.Size() }

func (f *errFile) Close() error {
	if err := f.e.maybe(OpClose, f.name); err != nil {
		f.f.Close() // the descriptor is gone either way, as with close(2)
		return err
	}
	return f.f.Close()
}
