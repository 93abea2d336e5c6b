// Package vfs is the small filesystem interface every byte of instadump
// goes through, so that tests can put a crashable or failing filesystem
// under the engine.
//
// Three implementations:
//
//   - OS: the real filesystem, with fdatasync for files, fsync for
//     directories and flock for the directory lock.
//   - MemFS (NewMem): an in-memory filesystem that remembers what has been
//     made durable. CrashClone returns the state a machine could be in
//     after power loss: synced data, and as CrashOptions draw some of the
//     unsynced blocks, any unsynced write torn or zeroed, and any subset
//     (in order) of the names created, made, renamed or removed since the
//     last SyncDir of their directory; a directory whose own name was
//     never synced is lost with all in it. A Sync that ErrorFS fails loses
//     the file's unsynced writes for good.
//   - ErrorFS (WithErrors): a wrapper that counts operations and fails the
//     ones an Injector chooses, with the error it chooses.
//
// Paths are slash or OS separated names; List and SyncDir take a
// directory, every other call a file.
package vfs

import (
	"errors"
	"io"
	"io/fs"
	"syscall"

	"github.com/instadump/instadump/internal/errs"
)

// File is an open file.
//
// Write appends at the end of the file. A File is not safe for
// concurrent use by several goroutines, except ReadAt.
type File interface {
	io.ReaderAt
	io.Writer
	// Sync makes the file's data and size durable. After a failed Sync
	// the file's contents are unknown: never retry it and trust it.
	Sync() error
	// Size returns the current size of the file.
	Size() (int64, error)
	Close() error
}

// FS is a filesystem.
type FS interface {
	// Create creates name for reading and writing, truncating it if it
	// exists. The new name is durable only after SyncDir of its directory.
	Create(name string) (File, error)
	// Open opens name for reading only.
	Open(name string) (File, error)
	// Rename atomically replaces newname with oldname. Durable after
	// SyncDir of both directories.
	Rename(oldname, newname string) error
	// Remove removes a file. Durable after SyncDir of its directory.
	Remove(name string) error
	// List returns the names (not paths) in dir, sorted.
	List(dir string) ([]string, error)
	// MkdirAll creates dir and any missing parents. Each new directory is
	// a name in its parent, durable after SyncDir of the parent
	// (MkdirAllDurable does both).
	MkdirAll(dir string) error
	// SyncDir makes the names in dir durable.
	SyncDir(dir string) error
	// Lock takes an exclusive lock on dir (through a file named LOCK in
	// it), failing at once with an error wrapping ErrLocked if someone
	// else holds it. Close releases it.
	Lock(dir string) (io.Closer, error)
}

// ErrLocked is returned by Lock when the lock is held elsewhere.
var ErrLocked = errs.ErrLocked

// LockFile is the name of the lock file Lock uses inside a directory.
const LockFile = "LOCK"

// IsNotExist reports whether err says a file does not exist.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// IsNotRegular reports whether err says a name is not a regular file
// (a FIFO, a device, a directory), as Open and Create refuse it.
func IsNotRegular(err error) bool {
	return errors.Is(err, ErrNotRegular) || errors.Is(err, syscall.EISDIR)
}

// ReadAll reads the whole of f, whose size is size, into memory.
func ReadAll(f io.ReaderAt, size int64) ([]byte, error) {
	buf := make([]byte, size)
	n, err := f.ReadAt(buf, 0)
	if n == len(buf) {
		return buf, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return buf[:n], err
}
