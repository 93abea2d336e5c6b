package manifest

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/fileheader"
)

// These constants are part of the wire format and must not change.
const (
	// Magic starts every manifest file.
	Magic = "\x89IDMAN\r\n"
	// RecordMagic starts every record frame.
	RecordMagic = "\xD8IDR"
	// Version is the format version this package writes; it reads 1 to
	// Version.
	Version = 2
	// HeaderSize is the size of the file header.
	HeaderSize = fileheader.Size
	// FrameHeaderSize is the size of a record frame's header.
	FrameHeaderSize = 16
	// MaxRecordSize is the largest payload of one record.
	MaxRecordSize = 1 << 30
	// MaxNameLen is the longest state or entry name, in bytes.
	MaxNameLen = 1024

	// CurrentMagic and CurrentVersion open the CURRENT file.
	CurrentMagic   = "instadump CURRENT"
	CurrentVersion = 1
	// MaxCurrentSize bounds what is read of a CURRENT file.
	MaxCurrentSize = 256

	// The first tag that readers may skip when they don't know it.
	firstSkippableTag = 64
)

// Record kinds.
const (
	_     Kind = iota
	Full       // the whole snapshot
	Delta      // changes against the previous record
)

// State kinds.
const (
	_          StateKind = iota
	ValueState           // one value
	MapState             // a base in parts and a chain of deltas
)

// Record field tags.
const (
	_ = iota
	tagSnapshot
	tagTime
	tagState
	tagRemoved
	tagNextSegment
	tagWritten
	tagRetained
)

// State field tags; location fields reuse stName to stRawSum.
const (
	_ = iota
	stName
	stSegment
	stOffset
	stStoredLen
	stRawLen
	stStoredSum
	stRawSum
	stSince
	stKind
	stBase
	stDelta
	stEntries
	stSchema = 64
)

var le = binary.LittleEndian

// Kind says whether a record is full or a delta.
type Kind uint8

func (k Kind) String() string { return enumName(k, "Kind", "", "full", "delta") }

// StateKind says what a state is made of.
type StateKind uint8

func (k StateKind) String() string { return enumName(k, "StateKind", "", "value", "map") }

// enumName returns names[v], or the type's name and v's number where
// names has no (non-empty) name for v.
func enumName[T ~uint8 | ~int](v T, typ string, names ...string) string {
	if int(v) >= 0 && int(v) < len(names) && names[v] != "" {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", typ, int(v))
}

// FileName returns the name of manifest file number num.
func FileName(num uint64) string { return fileheader.FileName("MANIFEST-", num, "") }

// ParseFileName returns the number of a manifest file name.
func ParseFileName(name string) (uint64, bool) {
	return fileheader.ParseFileName(name, "MANIFEST-", "")
}

// frameSum is the checksum of a frame: its length field, then payload.
func frameSum(lenField, payload []byte) uint64 {
	var d xxhash.Digest
	d.Reset()
	d.Write(lenField)
	d.Write(payload)
	return d.Sum64()
}

// putFrameHeader writes the header of a frame holding payload into h.
func putFrameHeader(h, payload []byte) {
	copy(h, RecordMagic)
	le.PutUint32(h[4:], uint32(len(payload)))
	le.PutUint64(h[8:], frameSum(h[4:8], payload))
}

// EncodeCurrent returns the contents of a CURRENT file naming manifest
// file number num.
func EncodeCurrent(num uint64) []byte {
	body := fmt.Sprintf("%s %d\n%s\n", CurrentMagic, CurrentVersion, FileName(num))
	return fmt.Appendf(nil, "%sxxh64 %016x\n", body, xxhash.Sum64String(body))
}

// DecodeCurrent parses a CURRENT file and returns the manifest file number
// it names. file names it in errors.
func DecodeCurrent(data []byte, file string) (uint64, error) {
	if len(data) > MaxCurrentSize {
		return 0, errs.Corruptf(file, MaxCurrentSize, "CURRENT is %d bytes, more than %d", len(data), MaxCurrentSize)
	}
	s := string(data)
	lines := strings.SplitAfter(s, "\n")
	if len(lines) != 4 || lines[3] != "" {
		return 0, errs.Corruptf(file, 0, "CURRENT does not have exactly three lines")
	}
	first := strings.TrimSuffix(lines[0], "\n")
	if !strings.HasPrefix(first, CurrentMagic+" ") {
		return 0, errs.CorruptCause(errs.ErrBadMagic, file, 0, "not a CURRENT file: first line %q", first)
	}
	body := lines[0] + lines[1]
	sumLine := strings.TrimSuffix(lines[2], "\n")
	hex, ok := strings.CutPrefix(sumLine, "xxh64 ")
	want, err := strconv.ParseUint(hex, 16, 64)
	if !ok || len(hex) != 16 || err != nil {
		return 0, errs.Corruptf(file, int64(len(body)), "bad checksum line %q", sumLine)
	}
	if got := xxhash.Sum64String(body); got != want {
		return 0, errs.CorruptCause(errs.ErrChecksum, file, int64(len(body)), "checksum %016x, want %016x", got, want)
	}
	v, err := strconv.ParseUint(strings.TrimPrefix(first, CurrentMagic+" "), 10, 16)
	if err != nil {
		return 0, errs.Corruptf(file, int64(len(CurrentMagic)+1), "bad version in %q", first)
	}
	if v != CurrentVersion {
		return 0, &errs.VersionError{File: file, Offset: int64(len(CurrentMagic) + 1), What: "CURRENT format version", Got: v, Max: CurrentVersion}
	}
	num, ok := ParseFileName(strings.TrimSuffix(lines[1], "\n"))
	if !ok {
		return 0, errs.Corruptf(file, int64(len(lines[0])), "bad manifest name %q", strings.TrimSuffix(lines[1], "\n"))
	}
	// Exactly as written: a changed letter case or an extra zero that
	// parses to the same values is damage too.
	if string(EncodeCurrent(num)) != s {
		return 0, errs.Corruptf(file, 0, "CURRENT is not in its canonical form")
	}
	return num, nil
}
