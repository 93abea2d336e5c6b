package manifest

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/fileheader"
	"github.com/instadump/instadump/segment"
)

// These constants are part of the wire format and must not change.
const (
	// Magic starts every manifest file.
	Magic = "\x89IDMAN\r\n"
	// RecordMagic starts every record frame.
	RecordMagic = "\xD8IDR"
	// Version is the format version this package writes and reads.
	Version = 1
	// HeaderSize is the size of the file header.
	HeaderSize = 32
	// FrameHeaderSize is the size of a record frame's header.
	FrameHeaderSize = 16
	// MaxRecordSize is the largest payload of one record.
	MaxRecordSize = 1 << 30

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

// State field tags.
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
)

// Errors, the same values as the root package's.
var (
	ErrCorrupt            = errs.ErrCorrupt
	ErrBadMagic           = errs.ErrBadMagic
	ErrChecksum           = errs.ErrChecksum
	ErrUnsupportedVersion = errs.ErrUnsupportedVersion
)

// CorruptError names the file and offset of corrupt data.
type CorruptError = errs.CorruptError

var le = binary.LittleEndian

// Kind says whether a record is full or a delta.
type Kind uint8

func (k Kind) String() string {
	switch k {
	case Full:
		return "full"
	case Delta:
		return "delta"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// StateRef says where one state's value lives: which segment, and the
// value's entry in it.
type StateRef struct {
	Segment uint64
	segment.Entry
	Since uint64 // the snapshot that wrote this value
}

// Record is one commit record.
type Record struct {
	Kind        Kind
	Snapshot    uint64
	Time        time.Time
	NextSegment uint64     // 0 when not recorded
	Written     int64      // bytes of the segment this snapshot wrote; 0 if none
	Retained    uint64     // the oldest snapshot the writer retains after this one; 0 if not recorded
	States      []StateRef // Full: every state; Delta: those written or moved
	Removed     []string   // Delta only: states dropped
}

// FileName returns the name of manifest file number num.
func FileName(num uint64) string { return fmt.Sprintf("MANIFEST-%06d", num) }

// ParseFileName returns the number of a manifest file name.
func ParseFileName(name string) (uint64, bool) {
	digits, ok := strings.CutPrefix(name, "MANIFEST-")
	if !ok || len(digits) < 6 || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil
}

func appendHeader(b []byte, id uint64) []byte { return fileheader.Append(b, Magic, Version, id) }

// parseHeader checks a header and returns the file number.
func parseHeader(h []byte, file string) (uint64, error) {
	return fileheader.Parse(h, file, "manifest", Magic, Version)
}

// frameSum is the checksum of a frame: its length field, then payload.
func frameSum(lenField, payload []byte) uint64 {
	var d xxhash.Digest
	d.Reset()
	d.Write(lenField)
	d.Write(payload)
	return d.Sum64()
}

func appendFrame(b, payload []byte) []byte {
	var h [FrameHeaderSize]byte
	copy(h[:], RecordMagic)
	le.PutUint32(h[4:], uint32(len(payload)))
	le.PutUint64(h[8:], frameSum(h[4:8], payload))
	b = append(b, h[:]...)
	return append(b, payload...)
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
		return 0, errs.CorruptCause(ErrBadMagic, file, 0, "not a CURRENT file: first line %q", first)
	}
	body := lines[0] + lines[1]
	sumLine := strings.TrimSuffix(lines[2], "\n")
	hex, ok := strings.CutPrefix(sumLine, "xxh64 ")
	want, err := strconv.ParseUint(hex, 16, 64)
	if !ok || len(hex) != 16 || err != nil {
		return 0, errs.Corruptf(file, int64(len(body)), "bad checksum line %q", sumLine)
	}
	if got := xxhash.Sum64String(body); got != want {
		return 0, errs.CorruptCause(ErrChecksum, file, int64(len(body)), "checksum %016x, want %016x", got, want)
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

func sortedNames(m map[string]StateRef) []string {
	return slices.Sorted(maps.Keys(m))
}
