// Package fileheader writes and checks what segment and manifest files
// share: the 32-byte header that starts every one of them, and their
// zero-padded numbered names. The header's layout is frozen across format
// versions, so any version can be told apart from damage:
//
//	 0  8  magic (per file kind)
//	 8  2  format version, little-endian
//	10  6  zero (reserved)
//	16  8  file number or ID, little-endian
//	24  8  xxhash64 of bytes 0..24, little-endian
package fileheader

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
	"github.com/instadump/instadump/internal/errs"
)

// Size is the size of a header. It is part of the wire format.
const Size = 32

var le = binary.LittleEndian

// Append appends a header to b.
func Append(b []byte, magic string, version uint16, id uint64) []byte {
	h := make([]byte, Size)
	copy(h, magic)
	le.PutUint16(h[8:], version)
	le.PutUint64(h[16:], id)
	Seal(h)
	return append(b, h...)
}

// Seal writes the checksum of the header at the start of h (at least Size
// bytes) over its bytes 0..24. Tests use it to make a crafted header
// pass, so that what lies behind it is reached.
func Seal(h []byte) { le.PutUint64(h[24:], xxhash.Sum64(h[:24])) }

// Parse checks the header h (Size bytes) of file, a "kind" file with the
// given magic, readable in versions 1 to maxVersion, and returns its ID
// and version. Errors name file and offset: bad magic, a bad checksum and
// version 0 wrap ErrCorrupt; a newer version with a good checksum is a
// *errs.VersionError.
func Parse(h []byte, file, kind, magic string, maxVersion uint16) (id uint64, version uint16, err error) {
	if string(h[:8]) != magic {
		return 0, 0, errs.CorruptCause(errs.ErrBadMagic, file, 0, "not a %s file: bad magic % x", kind, h[:8])
	}
	if got, want := le.Uint64(h[24:]), xxhash.Sum64(h[:24]); got != want {
		return 0, 0, errs.CorruptCause(errs.ErrChecksum, file, 24, "header checksum %016x, want %016x", got, want)
	}
	version = le.Uint16(h[8:])
	if version == 0 {
		return 0, 0, errs.Corruptf(file, 8, "%s format version 0", kind)
	}
	if version > maxVersion {
		return 0, 0, &errs.VersionError{File: file, Offset: 8, What: kind + " format version", Got: uint64(version), Max: uint64(maxVersion)}
	}
	if le.Uint16(h[10:]) != 0 || le.Uint32(h[12:]) != 0 {
		return 0, 0, errs.Corruptf(file, 10, "reserved header bytes are not zero")
	}
	return le.Uint64(h[16:]), version, nil
}
