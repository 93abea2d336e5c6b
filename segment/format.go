package segment

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
	"github.com/instadump/instadump/internal/fileheader"
)

// These constants are part of the wire format and must not change.
const (
	// Magic starts every segment file.
	Magic = "\x89IDSEG\r\n"
	// TrailerMagic ends every segment file.
	TrailerMagic = "\x89IDEND\r\n"
	// Version is the format version this package writes and reads.
	Version = 1
	// HeaderSize is the size of the header.
	HeaderSize = 32
	// TrailerSize is the size of the trailer.
	TrailerSize = 48
	// ChunkHeaderSize is the size of a chunk header.
	ChunkHeaderSize = 12
	// EntryHeaderSize is the fixed part of an index entry.
	EntryHeaderSize = 44
	// MaxChunk is the largest raw length of one chunk.
	MaxChunk = 16 << 20
	// MaxNameLen is the longest state name, in bytes.
	MaxNameLen = 1024
	// MinFileSize is the size of a segment with no values.
	MinFileSize = HeaderSize + 4 + TrailerSize

	codecNone = 0
	codecZstd = 1
)

var le = binary.LittleEndian

// Entry locates one value in a segment.
type Entry struct {
	Name      string
	Offset    int64  // of the value's first chunk header
	StoredLen int64  // bytes on disk, chunk headers included
	RawLen    int64  // bytes of the raw (msgpack) value
	StoredSum uint64 // xxhash64 of the stored bytes
	RawSum    uint64 // xxhash64 of the raw bytes
}

func appendHeader(b []byte, id uint64) []byte { return fileheader.Append(b, Magic, Version, id) }

// parseHeader checks a header and returns the segment ID.
func parseHeader(h []byte, file string) (uint64, error) {
	id, _, err := fileheader.Parse(h, file, "segment", Magic, Version)
	return id, err
}

func appendTrailer(b []byte, indexOff, indexLen int64, indexSum, id uint64) []byte {
	t := make([]byte, TrailerSize)
	le.PutUint64(t[0:], uint64(indexOff))
	le.PutUint64(t[8:], uint64(indexLen))
	le.PutUint64(t[16:], indexSum)
	le.PutUint64(t[24:], id)
	le.PutUint64(t[32:], xxhash.Sum64(t[:32]))
	copy(t[40:], TrailerMagic)
	return append(b, t...)
}

func appendEntry(b []byte, e *Entry) []byte {
	var h [EntryHeaderSize]byte
	le.PutUint16(h[0:], uint16(len(e.Name)))
	le.PutUint64(h[4:], uint64(e.Offset))
	le.PutUint64(h[12:], uint64(e.StoredLen))
	le.PutUint64(h[20:], uint64(e.RawLen))
	le.PutUint64(h[28:], e.StoredSum)
	le.PutUint64(h[36:], e.RawSum)
	b = append(b, h[:]...)
	return append(b, e.Name...)
}

func appendChunkHeader(b []byte, codec byte, raw, stored int) []byte {
	var h [ChunkHeaderSize]byte
	h[0] = codec
	le.PutUint32(h[4:], uint32(raw))
	le.PutUint32(h[8:], uint32(stored))
	return append(b, h[:]...)
}

// FileName returns the name of segment file id: six or more digits and
// ".seg".
func FileName(id uint64) string { return fileheader.FileName("", id, ".seg") }

// ParseFileName returns the ID of a segment file name.
func ParseFileName(name string) (uint64, bool) { return fileheader.ParseFileName(name, "", ".seg") }
