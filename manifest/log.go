package manifest

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/instadump/instadump/internal/errs"
)

// File is what a Writer appends to: a vfs.File or an *os.File.
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
	if _, err := f.Write(appendHeader(nil, num)); err != nil {
		return nil, err
	}
	return &Writer{f: f, off: HeaderSize}, nil
}

// Append writes rec (not durable until Sync) and returns the offset of
// its frame.
func (w *Writer) Append(rec Record) (int64, error) {
	payload, err := rec.AppendPayload(w.buf[:0])
	if err != nil {
		return 0, err
	}
	if len(payload) > MaxRecordSize {
		return 0, fmt.Errorf("manifest: record of snapshot %d is %d bytes, over the limit of %d", rec.Snapshot, len(payload), MaxRecordSize)
	}
	frame := appendFrame(nil, payload)
	w.buf = payload[:0]
	off := w.off
	n, err := w.f.Write(frame)
	w.off += int64(n)
	if err != nil {
		return off, err
	}
	return off, nil
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
	TailGarbage               // a last frame that fails its checks, nothing valid after it
)

func (t Tail) String() string {
	return [...]string{"clean", "cut short", "zeroed", "bad checksum"}[t]
}

// Snapshot is the full state of one snapshot, folded from records.
type Snapshot struct {
	ID          uint64
	Time        time.Time
	NextSegment uint64
	Written     int64  // bytes of the segment this snapshot wrote
	Retained    uint64 // the oldest snapshot retained with it (0: unknown)
	States      map[string]StateRef
	Offset      int64 // of the record that made it
}

// Replayed is what Replay found in a manifest file.
type Replayed struct {
	FileNum uint64
	Records []Record
	Offsets []int64 // of each record's frame
	// Snapshots holds the last keep snapshots (all, if keep <= 0),
	// oldest first.
	Snapshots []Snapshot
	// ValidEnd is where the last valid record ends: the size the file
	// must be cut to before anything is appended.
	ValidEnd int64
	Tail     Tail
	// TailErr describes a torn tail (nil when Tail is TailClean): a
	// *CorruptError, for logging. It is not returned as an error.
	TailErr error
}

// Replay reads a manifest of size bytes from r, checks every record and
// folds them into snapshots, keeping the last keep of them. file names
// the manifest in errors.
func Replay(r io.ReaderAt, size int64, file string, keep int) (*Replayed, error) {
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
	return ReplayBytes(data, file, keep)
}

// ReplayBytes is Replay on a manifest held in memory.
func ReplayBytes(data []byte, file string, keep int) (*Replayed, error) {
	if len(data) < HeaderSize {
		if len(data) >= 8 && string(data[:8]) != Magic {
			return nil, errs.CorruptCause(ErrBadMagic, file, 0, "not a manifest file: bad magic % x", data[:8])
		}
		return nil, errs.Corruptf(file, int64(len(data)), "file is %d bytes, shorter than the manifest header (%d)", len(data), HeaderSize)
	}
	num, err := parseHeader(data[:HeaderSize], file)
	if err != nil {
		return nil, err
	}
	rep := &Replayed{FileNum: num}
	pos := HeaderSize
	for pos < len(data) {
		payload, bad := frameAt(data, pos, file)
		if bad != nil {
			// Torn tail, or corruption if a valid frame follows.
			if q := findFrame(data, pos+1); q >= 0 {
				return nil, errs.Corruptf(file, int64(pos), "bad record (%v) followed by a valid one at offset %d", bad.Reason, q)
			}
			rep.Tail, rep.TailErr = bad.tail, bad.err(file, pos)
			break
		}
		rec, err := DecodePayload(payload, file, int64(pos+FrameHeaderSize))
		if err != nil {
			return nil, err
		}
		rep.Records = append(rep.Records, rec)
		rep.Offsets = append(rep.Offsets, int64(pos))
		pos += FrameHeaderSize + len(payload)
	}
	rep.ValidEnd = int64(pos)
	if rep.Tail == TailClean {
		rep.ValidEnd = int64(len(data))
	}
	if err := rep.fold(file, keep); err != nil {
		return nil, err
	}
	return rep, nil
}

type badFrame struct {
	tail   Tail
	Reason string
}

func (b *badFrame) err(file string, pos int) error {
	return errs.Corruptf(file, int64(pos), "torn tail (%s): %s", b.tail, b.Reason)
}

// frameAt checks the frame at pos and returns its payload.
func frameAt(data []byte, pos int, file string) ([]byte, *badFrame) {
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
		return nil, &badFrame{TailGarbage, fmt.Sprintf("record checksum %016x, want %016x", got, want)}
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
		if _, bad := frameAt(data, from+i, ""); bad == nil {
			return from + i
		}
		from += i + 1
	}
	return -1
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// fold applies the records in order, checking that they chain, and keeps
// the last keep snapshots.
func (rep *Replayed) fold(file string, keep int) error {
	cur := map[string]StateRef{}
	first := 0
	if keep > 0 && len(rep.Records) > keep {
		first = len(rep.Records) - keep
	}
	var prev, floor uint64
	for i, rec := range rep.Records {
		at := rep.Offsets[i]
		if i == 0 && rec.Kind != Full {
			return errs.Corruptf(file, at, "the first record of a manifest is a delta")
		}
		if rec.Snapshot <= prev {
			return errs.Corruptf(file, at, "snapshot ID %d does not follow %d", rec.Snapshot, prev)
		}
		prev = rec.Snapshot
		floor = rec.Retained
		if rec.Kind == Full {
			clear(cur)
		}
		for _, n := range rec.Removed {
			if _, ok := cur[n]; !ok {
				return errs.Corruptf(file, at, "snapshot %d removes state %q, which snapshot %d does not have", rec.Snapshot, n, rec.Snapshot-1)
			}
			delete(cur, n)
		}
		for _, s := range rec.States {
			cur[s.Name] = s
		}
		if i >= first {
			rep.Snapshots = append(rep.Snapshots, Snapshot{
				ID: rec.Snapshot, Time: rec.Time, NextSegment: rec.NextSegment, Written: rec.Written, Retained: rec.Retained,
				States: maps.Clone(cur), Offset: at,
			})
		}
	}
	// Snapshots older than the last record's floor are no longer retained
	// by the writer: their segments may be gone.
	for len(rep.Snapshots) > 0 && rep.Snapshots[0].ID < floor {
		rep.Snapshots = rep.Snapshots[1:]
	}
	return nil
}

// Diff returns the delta record that turns snapshot prev into next: the
// states of next whose location differs from prev's, and the states of
// prev that next lacks, each sorted by name. It sorts only what changed.
func Diff(prev, next *Snapshot) Record {
	rec := Record{Kind: Delta, Snapshot: next.ID, Time: next.Time, NextSegment: next.NextSegment, Written: next.Written, Retained: next.Retained}
	for name, s := range next.States {
		if p, ok := prev.States[name]; !ok || p != s {
			rec.States = append(rec.States, s)
		}
	}
	slices.SortFunc(rec.States, func(a, b StateRef) int { return strings.Compare(a.Name, b.Name) })
	for name := range prev.States {
		if _, ok := next.States[name]; !ok {
			rec.Removed = append(rec.Removed, name)
		}
	}
	slices.Sort(rec.Removed)
	return rec
}

// FullRecord returns the full record of snapshot s.
func FullRecord(s *Snapshot) Record {
	rec := Record{Kind: Full, Snapshot: s.ID, Time: s.Time, NextSegment: s.NextSegment, Written: s.Written, Retained: s.Retained}
	for _, name := range sortedNames(s.States) {
		rec.States = append(rec.States, s.States[name])
	}
	return rec
}
