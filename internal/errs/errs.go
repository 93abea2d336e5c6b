// Package errs holds the error values shared by every layer of instadump.
//
// The root package, segment and manifest re-export these same values, so
// errors.Is(err, instadump.ErrCorrupt) holds for corruption found at any
// layer, and errors.As(err, &ce) with ce of type *instadump.CorruptError
// yields the file, offset and reason.
package errs

import (
	"errors"
	"fmt"
)

// ErrCorrupt is the class of every error caused by bytes on disk that are
// not what instadump wrote: a bad checksum, an impossible length, bad magic.
// Test for it with errors.Is.
var ErrCorrupt = errors.New("instadump: corrupt data")

// ErrBadMagic reports a file that does not start (or end) with the magic
// number of the format it was read as. It is also ErrCorrupt.
var ErrBadMagic = errors.New("instadump: bad magic number")

// ErrChecksum reports data whose xxhash64 does not match the recorded one.
// It is also ErrCorrupt.
var ErrChecksum = errors.New("instadump: checksum mismatch")

// ErrUnsupportedVersion reports a file (or record) written in a format
// version, or with a required field, that this build does not understand:
// most likely written by a newer instadump. It is not ErrCorrupt: upgrade
// instadump rather than restore from a backup.
var ErrUnsupportedVersion = errors.New("instadump: unsupported format version")

// ErrLocked reports a directory whose lock is held by another process (or
// by another open DB in this one).
var ErrLocked = errors.New("instadump: directory is locked by another process")

// CorruptError is the error returned for corrupt data. It names the file
// and the byte offset where the problem was found. errors.Is(err,
// ErrCorrupt) is true for every *CorruptError; Err, when set, is a more
// specific cause (ErrBadMagic, ErrChecksum) that errors.Is also matches.
type CorruptError struct {
	File   string // path or name of the file
	Offset int64  // byte offset in the file where the bad data starts
	Reason string // what is wrong, in words
	Err    error  // optional specific cause
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("instadump: corrupt data in file %q at offset %d: %s (the file was damaged after it was written; restore it from a backup or reopen with fallback to an older snapshot)", e.File, e.Offset, e.Reason)
}

// Is makes every *CorruptError match ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// Unwrap returns the specific cause, if any.
func (e *CorruptError) Unwrap() error { return e.Err }

// Corruptf returns a *CorruptError for file at offset with a formatted
// reason.
func Corruptf(file string, off int64, format string, args ...any) error {
	return &CorruptError{File: file, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// CorruptCause is Corruptf with a specific cause that errors.Is matches.
func CorruptCause(cause error, file string, off int64, format string, args ...any) error {
	return &CorruptError{File: file, Offset: off, Reason: fmt.Sprintf(format, args...), Err: cause}
}

// VersionError reports an unsupported format version in file at offset.
// errors.Is(err, ErrUnsupportedVersion) is true.
type VersionError struct {
	File   string
	Offset int64
	What   string // the format or field, e.g. "segment format version"
	Got    uint64 // the version found
	Max    uint64 // the newest version this build reads
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("instadump: %s %d in file %q at offset %d is newer than this build reads (up to %d); upgrade instadump to read it", e.What, e.Got, e.File, e.Offset, e.Max)
}

// Is makes every *VersionError match ErrUnsupportedVersion.
func (e *VersionError) Is(target error) bool { return target == ErrUnsupportedVersion }

// ErrClosed reports use of a DB after Close.
var ErrClosed = errors.New("instadump: DB is closed")

// ErrReadOnly reports a write to a DB opened read-only.
var ErrReadOnly = errors.New("instadump: DB is open read-only")
