package instadump

import (
	"errors"
	"fmt"

	"github.com/instadump/instadump/internal/errs"
)

// Errors. Test for them with errors.Is; the same values are used by every
// layer, so corruption found in a segment or the manifest is ErrCorrupt
// here too.
var (
	// ErrLocked: the directory is open in another process, or by another
	// DB in this one; the error says which.
	ErrLocked = errs.ErrLocked
	// ErrClosed: the DB was closed.
	ErrClosed = errs.ErrClosed
	// ErrCorrupt: data on disk is damaged, or a file is missing. The
	// error is a *CorruptError naming the file and offset, and saying
	// what to do.
	ErrCorrupt = errs.ErrCorrupt
	// ErrUnsupportedVersion: a file was written by a newer instadump.
	ErrUnsupportedVersion = errs.ErrUnsupportedVersion
	// ErrReadOnly: a write to a DB opened WithReadOnly.
	ErrReadOnly = errs.ErrReadOnly
	// ErrNotDB: a directory opened WithReadOnly holds no instadump DB.
	ErrNotDB = errs.ErrNotDB
	// ErrBadOption: an option whose value cannot mean what was asked
	// (WithRetain(0), a negative interval), or options that contradict
	// each other (WithReplica with WithReadOnly, RestoreAt with
	// RestoreBefore).
	ErrBadOption = errs.ErrBadOption
	// ErrNotSaved: Reload found a registered state that the snapshot does
	// not hold; nothing was changed.
	ErrNotSaved = errors.New("instadump: state was never saved")
	// ErrNoSnapshot: there is no snapshot (or not the one asked for).
	ErrNoSnapshot = errs.ErrNoSnapshot
	// ErrDuplicate: a state name is already registered on this DB.
	ErrDuplicate = errors.New("instadump: state name already registered")
	// ErrNoState: Drop of a name that is neither registered nor saved.
	ErrNoState = errs.ErrNoState
	// ErrBadName: a state name that is empty, too long, not UTF-8, or
	// holds control characters.
	ErrBadName = errors.New("instadump: invalid state name")
	// ErrUnsupportedType: a state's Go type cannot be stored (a chan, a
	// func, complex numbers, a non-empty interface; a Map key of another
	// kind than bool, string or integer), or, at Save, a value that
	// could not be loaded again (a chan in an interface, a map key
	// holding an interface with an array or struct in it, a marshaller
	// whose output is not one msgpack value).
	ErrUnsupportedType = errors.New("instadump: type cannot be stored")
	// ErrTypeMismatch: a stored value does not decode into the state's
	// type. The error is a *DecodeError.
	ErrTypeMismatch = errors.New("instadump: stored value does not fit the state's type")
)

// CorruptError names the file and offset of damaged data, and says what
// it means and what to do.
type CorruptError = errs.CorruptError

// DecodeError reports a stored value that does not decode into the Go
// type of its state. errors.Is(err, ErrTypeMismatch) is true.
type DecodeError struct {
	State  string // the state's name
	Stored string // what is stored, e.g. "msgpack string"
	Wanted string // the state's Go type
	Err    error  // the decoder's error
	Map    bool   // the state is a Map, which takes no migrations
	todo   string // what to do, where the usual advice does not fit
}

func (e *DecodeError) Error() string {
	todo := "register it with a matching type, give it a migration (MigrateFrom), or Drop it"
	switch {
	case e.todo != "":
		todo = e.todo
	case e.Map:
		todo = "register it with NewMap and the key and value types it was saved with, or Drop it (its entries are lost); a Map has no migrations: to change its types, register it with the old ones, copy its entries into a Map of another name, and Drop it"
	}
	return fmt.Sprintf("instadump: state %s holds a %s that does not decode into %s (%v): %s", quote(e.State), e.Stored, e.Wanted, e.Err, todo)
}

// Is makes a *DecodeError match ErrTypeMismatch.
func (e *DecodeError) Is(target error) bool { return target == ErrTypeMismatch }

// Unwrap returns the decoder's error.
func (e *DecodeError) Unwrap() error { return e.Err }

// storedKind names the msgpack type a value starts with.
func storedKind(raw []byte) string {
	if len(raw) == 0 {
		return "empty value"
	}
	c := raw[0]
	switch {
	case c <= 0x7f || c >= 0xe0 || (c >= 0xcc && c <= 0xd3):
		return "msgpack integer"
	case c <= 0x8f || c == 0xde || c == 0xdf:
		return "msgpack map"
	case c <= 0x9f || c == 0xdc || c == 0xdd:
		return "msgpack array"
	case c <= 0xbf || (c >= 0xd9 && c <= 0xdb):
		return "msgpack string"
	case c == 0xc0:
		return "msgpack nil"
	case c == 0xc2 || c == 0xc3:
		return "msgpack bool"
	case c >= 0xc4 && c <= 0xc6:
		return "msgpack binary"
	case c == 0xca || c == 0xcb:
		return "msgpack float"
	case c == 0xd6 && len(raw) > 1 && int8(raw[1]) == -1, c == 0xd7 && len(raw) > 1 && int8(raw[1]) == -1,
		c == 0xc7 && len(raw) > 2 && int8(raw[2]) == -1:
		return "msgpack timestamp"
	}
	return "msgpack extension"
}
