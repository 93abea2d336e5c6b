// Package errs holds the error values shared by every layer of instadump.
//
// The root package exports these same values, so errors.Is(err,
// instadump.ErrCorrupt) holds for corruption found at any layer, and
// errors.As(err, &ce) with ce of type *instadump.CorruptError yields the
// file, offset and reason.
package errs

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
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

// ErrMissing reports a file that a retained snapshot needs but that is
// not there. It is also ErrCorrupt. To a read-only reader beside a
// process that is saving it can also mean the file was deleted a moment
// ago, by the owner's garbage collection.
var ErrMissing = errors.New("instadump: file is missing")

// ErrUnsupportedVersion reports a file (or record) written in a format
// version, or with a required field, that this build does not understand:
// most likely written by a newer instadump. It is not ErrCorrupt: upgrade
// instadump rather than restore from a backup.
var ErrUnsupportedVersion = errors.New("instadump: unsupported format version")

// ErrLocked reports a directory whose lock is held by another process,
// or by another open DB in this one; the error wrapping it says which.
var ErrLocked = errors.New("instadump: DB directory is locked")

// CorruptError is the error returned for corrupt data. It names the file
// and the byte offset where the problem was found. errors.Is(err,
// ErrCorrupt) is true for every *CorruptError; Err, when set, is a more
// specific cause (ErrBadMagic, ErrChecksum, ErrMissing) that errors.Is
// also matches.
type CorruptError struct {
	File   string // path or name of the file
	Offset int64  // byte offset in the file where the bad data starts
	Reason string // what is wrong, in words
	Err    error  // optional specific cause
	// Hint says what this means and what to do; HintDamaged when empty.
	Hint string
}

// Hints: what a CorruptError means, and what to do.
const (
	// HintDamaged: bytes changed after they were written and synced.
	HintDamaged = "the file was damaged after it was written: restore the directory from a backup, or open it with WithFallback to load the newest intact older snapshot"
	// HintMissing: a file that a retained snapshot needs is not there.
	HintMissing = "a file a retained snapshot needs is missing, deleted or moved by something other than instadump: put it back or restore the directory from a backup, or open with WithFallback to load an older snapshot that does not need it"
	// HintTornTail: the end of a save a crash interrupted; not damage.
	HintTornTail = "this is what a crash during a save leaves behind, not damage: that save was never acknowledged, and recovery ignores it; nothing to do"
	// HintDamagedTail: the last commit record was written whole and
	// damaged since; recovery cannot read it, and fails unless it may
	// fall back.
	HintDamagedTail = "the last commit record was written whole and damaged since, so its snapshot, which may have been acknowledged, cannot be loaded: restore the directory from a backup, or open it with WithFallback to load the snapshot before it (a read-write open then keeps the manifest and the segments only that record may name aside as .broken)"
	// HintNoFallback: damage that no retained snapshot escapes.
	HintNoFallback = "no retained snapshot is intact, so fallback cannot help: restore the directory from a backup"
)

func (e *CorruptError) Error() string {
	hint := e.Hint
	if hint == "" {
		hint = HintDamaged
	}
	return fmt.Sprintf("instadump: corrupt data in file %q at offset %d: %s (%s)", e.File, e.Offset, e.Reason, hint)
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

// Missing returns the *CorruptError of a file a snapshot needs that is
// not there.
func Missing(file, format string, args ...any) error {
	return &CorruptError{File: file, Reason: fmt.Sprintf(format, args...), Err: ErrMissing, Hint: HintMissing}
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

// ErrNotDB reports a directory opened read-only that holds no instadump
// DB: no CURRENT, no manifest.
var ErrNotDB = errors.New("instadump: not an instadump directory")

// ErrBadOption: an option whose value cannot mean what was asked, or
// options that contradict each other.
var ErrBadOption = errors.New("instadump: invalid option")

// ErrNoSnapshot reports a snapshot that is not there: none retained or
// replicated, or not the one asked for.
var ErrNoSnapshot = errors.New("instadump: no such snapshot")

// ErrNoState reports a state name that a DB or snapshot does not hold.
var ErrNoState = errors.New("instadump: no such state")

// ErrClosed reports use of a DB after Close.
var ErrClosed = errors.New("instadump: DB is closed")

// ErrReadOnly reports a write to a DB opened read-only.
var ErrReadOnly = errors.New("instadump: DB is open read-only")

// HintNoSpace says what to do when the filesystem holding a DB is full.
const HintNoSpace = "free space on that filesystem (or raise the quota), or open the DB WithReadOnly to read it: a read-only open writes nothing"

// NoSpaceError reports a write that failed because the filesystem holding
// Dir is full (ENOSPC) or the quota is used up (EDQUOT). errors.Is(err,
// syscall.ENOSPC) still holds: Unwrap returns the write's error.
type NoSpaceError struct {
	Dir string // the DB directory
	Op  string // what was being done, e.g. "open"
	Err error  // the failed write, naming its file
}

func (e *NoSpaceError) Error() string {
	full := "the filesystem is full"
	if errors.Is(e.Err, syscall.EDQUOT) {
		full = "the disk quota is reached"
	}
	return fmt.Sprintf("instadump: %s of %s failed: %s (%s); %s", e.Op, e.Dir, full, strings.TrimPrefix(e.Err.Error(), "instadump: "), HintNoSpace)
}

// Unwrap returns the failed write's error.
func (e *NoSpaceError) Unwrap() error { return e.Err }

// NoSpace returns err as a *NoSpaceError when it is ENOSPC or EDQUOT,
// and err unchanged otherwise.
func NoSpace(op, dir string, err error) error {
	var ns *NoSpaceError
	if err == nil || errors.As(err, &ns) || !(errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)) {
		return err
	}
	return &NoSpaceError{Dir: dir, Op: op, Err: err}
}

// Hints of damage found in a replica store, where WithFallback (which
// loads an older snapshot of the local directory) does not apply.
const (
	// HintReplicaDamaged: an object in a replica store is damaged.
	HintReplicaDamaged = "the object was damaged in the replica store after it was written: restore an older snapshot of the replica (RestoreAt or RestoreBefore; instadump-inspect replica-verify lists which are intact), and check the store (its disks, its server)"
	// HintReplicaMissing: an object a replicated snapshot needs is gone.
	HintReplicaMissing = "an object this replicated snapshot needs is not in the replica store (deleted or moved by something other than instadump): restore an older snapshot of the replica (RestoreAt or RestoreBefore; instadump-inspect replica-verify lists which are intact), and check the store"
)

// InReplica returns err, found reading a replica store, with the hints
// of the *CorruptErrors it holds made to fit a replica: the defaults
// speak of the local directory and WithFallback. It sets their Hint in
// place, for errors.As, and returns an error that wraps err with the
// same text but for the hints (wrappers made by fmt.Errorf hold their
// text already made).
func InReplica(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*replicaError); ok {
		return err
	}
	found := false
	for e := err; e != nil; {
		if ce, ok := e.(*CorruptError); ok {
			found = true
			switch ce.Hint {
			case "", HintDamaged:
				ce.Hint = HintReplicaDamaged
			case HintMissing:
				ce.Hint = HintReplicaMissing
			}
		}
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			e = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				found = InReplica(x) != x || found
			}
			e = nil
		default:
			e = nil
		}
	}
	if !found {
		return err
	}
	return &replicaError{err}
}

// replicaError is an error found in a replica store, its text with the
// hints for a replica.
type replicaError struct{ err error }

var replicaHints = strings.NewReplacer(HintDamaged, HintReplicaDamaged, HintMissing, HintReplicaMissing)

func (e *replicaError) Error() string { return replicaHints.Replace(e.err.Error()) }

func (e *replicaError) Unwrap() error { return e.err }

// Wrapf returns err with what was being done, for a message that says
// "instadump: " once: "instadump: WHAT: ERR", ERR without its own
// "instadump: ". errors.Is and As see err.
func Wrapf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := "instadump: " + fmt.Sprintf(format, args...) + ": " + strings.TrimPrefix(err.Error(), "instadump: ")
	return &wrapped{msg: msg, err: err}
}

type wrapped struct {
	msg string
	err error
}

func (e *wrapped) Error() string { return e.msg }

func (e *wrapped) Unwrap() error { return e.err }
