package manifest

import (
	"bytes"
	"fmt"
	"io"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/fileheader"
)

// File is what a Writer appends to: an *os.File, or a file of the
// engine's filesystem.
type File interface {
	io.Writer
	Sync() error
}

// Writer appends records to a manifest file. It is not safe for
// concurrent use.
type Writer struct {
	f   File
	off int64
	buf []byte
}

// Create writes the header of manifest file number num to f, a new empty
// file, and returns a Writer for its records. The header is durable only
// after Sync.
func Create(f File, num uint64) (*Writer, error) {
	if _, err := f.Write(fileheader.Append(nil, Magic, Version, num)); err != nil {
		return nil, err
	}
	return &Writer{f: f, off: HeaderSize}, nil
}

// maxKeptBuffer is the largest buffer a Writer keeps between records: a
// large record (a first save of many states) is rare, and its buffer
// would stay pinned for nothing.
const maxKeptBuffer = 1 << 20

// Append writes rec (not durable until Sync) and returns the offset of
// its frame.
func (w *Writer) Append(rec Record) (int64, error) {
	// The frame is encoded in place: header space, payload, then header.
	frame, err := rec.AppendPayload(append(w.buf[:0], make([]byte, FrameHeaderSize)...))
	if err != nil {
		return 0, err
	}
	payload := frame[FrameHeaderSize:]
	if len(payload) > MaxRecordSize {
		return 0, fmt.Errorf("manifest: record of snapshot %d is %d bytes, over the limit of %d", rec.Snapshot, len(payload), MaxRecordSize)
	}
	if cap(frame) <= maxKeptBuffer { // kept for the next record, unless refused or large
		w.buf = frame[:0]
	} else {
		w.buf = nil
	}
	putFrameHeader(frame[:FrameHeaderSize], payload)
	off := w.off
	n, err := w.f.Write(frame)
	w.off += int64(n)
	return off, err
}

// Sync makes every appended record durable.
func (w *Writer) Sync() error { return w.f.Sync() }

// Size returns the size of the file as written so far.
func (w *Writer) Size() int64 { return w.off }

// Tail says how a manifest file ended.
type Tail int

// How a manifest ends.
const (
	TailClean     Tail = iota // the last record ends at the end of the file
	TailTruncated             // the last frame is cut short
	TailZeroed                // zeros after the last valid record
	TailGarbage               // a last frame with a bad magic or length, nothing valid after it
	// TailDamaged is a last frame complete to its length whose checksum
	// fails, with none of the zeros a crash leaves: damage to a record
	// that was written whole, not a torn append. Replay still returns
	// the records before it (it cannot read this one), but a reader
	// must not take it for the end of a crash.
	//
	// It is not the whole test for damage to a last record: a flipped
	// bit in the frame's magic or length field reads as a torn tail
	// (TailGarbage, TailTruncated, or TailZeroed for a shorter length
	// ending on a zero byte), since those fields are what tell a record
	// from a crash's remains. The package doc says which.
	TailDamaged
)

func (t Tail) String() string {
	return enumName(t, "Tail", "clean", "cut short", "zeroed", "bad frame", "damaged record")
}

// Log is what Replay found in a manifest file: its records, in order,
// checked one by one and for their order (the first one full, snapshot
// IDs increasing). Folding them into snapshots is the reader's business.
type Log struct {
	FileNum uint64
	Version uint16
	Records []Record
	Offsets []int64 // of each record's frame
	Tail    Tail
	// TailErr describes how the log ended (nil when Tail is TailClean):
	// a *CorruptError naming the file and the offset of the last frame,
	// for the reader to log or report, not returned as an error. Its
	// Hint is errs.HintTornTail for a torn tail, errs.HintDamagedTail for
	// TailDamaged.
	TailErr error
}

// Replay reads a manifest of size bytes from r and checks every record.
// file names the manifest in errors.
func Replay(r io.ReaderAt, size int64, file string) (*Log, error) {
	if size < 0 {
		return nil, fmt.Errorf("manifest: negative size %d for %s", size, file)
	}
	data := make([]byte, size)
	if n, err := r.ReadAt(data, 0); n != len(data) {
		if err == nil || err == io.EOF {
			return nil, errs.Corruptf(file, int64(n), "file ends early: read %d of %d bytes", n, size)
		}
		return nil, fmt.Errorf("manifest: reading %s: %w", file, err)
	}
	return ReplayBytes(data, file)
}

// ReplayBytes is Replay on a manifest held in memory.
func ReplayBytes(data []byte, file string) (*Log, error) {
	if len(data) < HeaderSize {
		if len(data) >= 8 && string(data[:8]) != Magic {
			return nil, errs.CorruptCause(errs.ErrBadMagic, file, 0, "not a manifest file: bad magic % x", data[:8])
		}
		return nil, errs.Corruptf(file, int64(len(data)), "file is %d bytes, shorter than the manifest header (%d)", len(data), HeaderSize)
	}
	num, version, err := fileheader.Parse(data[:HeaderSize], file, "manifest", Magic, Version)
	if err != nil {
		return nil, err
	}
	log := &Log{FileNum: num, Version: version}
	for pos := HeaderSize; pos < len(data); {
		payload, bad := frameAt(data, pos)
		if bad != nil {
			// Torn tail, or corruption if a valid frame follows.
			if q := findFrame(data, pos+1); q >= 0 {
				return nil, errs.Corruptf(file, int64(pos), "bad record (%s) followed by a valid one at offset %d", bad.reason, q)
			}
			log.Tail = bad.tail
			if bad.tail == TailDamaged {
				log.TailErr = &errs.CorruptError{File: file, Offset: int64(pos), Reason: "the last record is complete but " + bad.reason, Err: errs.ErrChecksum, Hint: errs.HintDamagedTail}
				break
			}
			log.TailErr = &errs.CorruptError{File: file, Offset: int64(pos), Reason: fmt.Sprintf("torn tail (%s): %s", bad.tail, bad.reason), Hint: errs.HintTornTail}
			break
		}
		rec, err := DecodePayload(payload, file, int64(pos+FrameHeaderSize))
		if err != nil {
			return nil, err
		}
		if len(log.Records) == 0 && rec.Kind != Full {
			return nil, errs.Corruptf(file, int64(pos), "the first record of a manifest is a delta")
		}
		if n := len(log.Records); n > 0 && rec.Snapshot <= log.Records[n-1].Snapshot {
			return nil, errs.Corruptf(file, int64(pos), "snapshot ID %d does not follow %d", rec.Snapshot, log.Records[n-1].Snapshot)
		}
		log.Records = append(log.Records, rec)
		log.Offsets = append(log.Offsets, int64(pos))
		pos += FrameHeaderSize + len(payload)
	}
	return log, nil
}

type badFrame struct {
	tail   Tail
	reason string
}

// frameAt checks the frame at pos and returns its payload.
func frameAt(data []byte, pos int) ([]byte, *badFrame) {
	rest := data[pos:]
	if isZero(rest) {
		return nil, &badFrame{TailZeroed, fmt.Sprintf("%d zero bytes", len(rest))}
	}
	if len(rest) < FrameHeaderSize {
		return nil, &badFrame{TailTruncated, fmt.Sprintf("frame header cut short at %d of %d bytes", len(rest), FrameHeaderSize)}
	}
	if string(rest[:4]) != RecordMagic {
		return nil, &badFrame{TailGarbage, fmt.Sprintf("bad record magic % x", rest[:4])}
	}
	l := le.Uint32(rest[4:])
	if l == 0 || l > MaxRecordSize {
		return nil, &badFrame{TailGarbage, fmt.Sprintf("bad record length %d", l)}
	}
	if uint64(l) > uint64(len(rest)-FrameHeaderSize) {
		return nil, &badFrame{TailTruncated, fmt.Sprintf("record of %d bytes cut short at %d", l, len(rest)-FrameHeaderSize)}
	}
	payload := rest[FrameHeaderSize : FrameHeaderSize+int(l)]
	if got, want := frameSum(rest[4:8], payload), le.Uint64(rest[8:]); got != want {
		if lostSector(data, pos, pos+FrameHeaderSize+int(l)) {
			return nil, &badFrame{TailZeroed, fmt.Sprintf("record of %d bytes with zeroed sectors (checksum %016x, want %016x)", l, got, want)}
		}
		return nil, &badFrame{TailDamaged, fmt.Sprintf("fails its checksum: %016x, want %016x", got, want)}
	}
	return payload, nil
}

// findFrame returns the offset of the first valid frame at or after from,
// or -1.
func findFrame(data []byte, from int) int {
	for from < len(data) {
		i := bytes.Index(data[from:], []byte(RecordMagic))
		if i < 0 {
			return -1
		}
		if _, bad := frameAt(data, from+i); bad == nil {
			return from + i
		}
		from += i + 1
	}
	return -1
}

// sectorSize is the unit a crash loses a write in: the smallest block a
// disk writes whole.
const sectorSize = 512

// lostSector says whether the frame data[from:to] has the zeros an
// append a crash interrupted leaves: its end zeroed (a record's last byte,
// the end of a uvarint of a field that is never zero, is never 0), or a
// whole sector of the file zeroed inside it (the size reached the disk,
// some of the data did not). Damage to a record written whole (flipped
// bits) leaves neither.
func lostSector(data []byte, from, to int) bool {
	if data[to-1] == 0 {
		return true
	}
	for off := (from + sectorSize - 1) / sectorSize * sectorSize; off+sectorSize <= to; off += sectorSize {
		if isZero(data[off : off+sectorSize]) {
			return true
		}
	}
	return false
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
