package manifest

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/segment"
)

// The times a record can hold: nanoseconds since 1970 in an int64.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

func appendField(b []byte, tag uint64, value []byte) []byte {
	b = binary.AppendUvarint(b, tag)
	b = binary.AppendUvarint(b, uint64(len(value)))
	return append(b, value...)
}

func appendUvarintField(b []byte, tag, v uint64) []byte {
	var tmp [binary.MaxVarintLen64]byte
	return appendField(b, tag, binary.AppendUvarint(tmp[:0], v))
}

func appendFixedField(b []byte, tag, v uint64) []byte {
	var tmp [8]byte
	le.PutUint64(tmp[:], v)
	return appendField(b, tag, tmp[:])
}

// Validate checks that r can be written: what a reader would refuse, the
// writer refuses too.
func (r *Record) Validate() error {
	if r.Kind != Full && r.Kind != Delta {
		return fmt.Errorf("manifest: record kind %d", r.Kind)
	}
	if r.Retained > r.Snapshot {
		return fmt.Errorf("manifest: snapshot %d says it retains from snapshot %d on", r.Snapshot, r.Retained)
	}
	if r.Written < 0 {
		return fmt.Errorf("manifest: record says %d bytes written", r.Written)
	}
	if r.Snapshot == 0 {
		return fmt.Errorf("manifest: record has snapshot ID 0")
	}
	if r.Time.Before(minTime) || r.Time.After(maxTime) {
		return fmt.Errorf("manifest: record time %v outside the years 1678 to 2262", r.Time)
	}
	if r.Kind == Full && len(r.Removed) > 0 {
		return fmt.Errorf("manifest: a full record cannot remove states")
	}
	seen := make(map[string]bool, len(r.States)+len(r.Removed))
	for _, s := range r.States {
		switch {
		case s.Name == "" || len(s.Name) > segment.MaxNameLen:
			return fmt.Errorf("manifest: state name %q must be 1 to %d bytes", s.Name, segment.MaxNameLen)
		case seen[s.Name]:
			return fmt.Errorf("manifest: state %q appears twice in snapshot %d", s.Name, r.Snapshot)
		case s.Segment == 0 || s.Offset < 0 || s.StoredLen < 0 || s.RawLen < 0:
			return fmt.Errorf("manifest: state %q has an impossible location %+v", s.Name, s)
		case s.Since == 0 || s.Since > r.Snapshot:
			return fmt.Errorf("manifest: state %q written in snapshot %d, not in 1..%d", s.Name, s.Since, r.Snapshot)
		}
		seen[s.Name] = true
	}
	for _, n := range r.Removed {
		if n == "" || len(n) > segment.MaxNameLen || seen[n] {
			return fmt.Errorf("manifest: bad or repeated removed state %q", n)
		}
		seen[n] = true
	}
	return nil
}

// AppendPayload appends r's payload encoding to b.
func (r *Record) AppendPayload(b []byte) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	b = append(b, byte(r.Kind))
	b = appendUvarintField(b, tagSnapshot, r.Snapshot)
	b = appendField(b, tagTime, binary.AppendVarint(nil, r.Time.UnixNano()))
	var st []byte
	for _, s := range r.States {
		st = appendField(st[:0], stName, []byte(s.Name))
		st = appendUvarintField(st, stSegment, s.Segment)
		st = appendUvarintField(st, stOffset, uint64(s.Offset))
		st = appendUvarintField(st, stStoredLen, uint64(s.StoredLen))
		st = appendUvarintField(st, stRawLen, uint64(s.RawLen))
		st = appendFixedField(st, stStoredSum, s.StoredSum)
		st = appendFixedField(st, stRawSum, s.RawSum)
		st = appendUvarintField(st, stSince, s.Since)
		b = appendField(b, tagState, st)
	}
	for _, n := range r.Removed {
		b = appendField(b, tagRemoved, []byte(n))
	}
	if r.NextSegment != 0 {
		b = appendUvarintField(b, tagNextSegment, r.NextSegment)
	}
	if r.Written != 0 {
		b = appendUvarintField(b, tagWritten, uint64(r.Written))
	}
	if r.Retained != 0 {
		b = appendUvarintField(b, tagRetained, r.Retained)
	}
	return b, nil
}

// fieldReader walks tag-length-value fields in b; base is the file
// offset of b[0], for errors.
type fieldReader struct {
	b    []byte
	pos  int
	base int64
	file string
}

func (f *fieldReader) corrupt(format string, args ...any) error {
	return errs.Corruptf(f.file, f.base+int64(f.pos), format, args...)
}

func (f *fieldReader) next() (tag uint64, value []byte, at int64, err error) {
	at = f.base + int64(f.pos)
	tag, n := binary.Uvarint(f.b[f.pos:])
	if n <= 0 {
		return 0, nil, at, f.corrupt("bad field tag")
	}
	f.pos += n
	l, n := binary.Uvarint(f.b[f.pos:])
	if n <= 0 || l > uint64(len(f.b)-f.pos-n) {
		return 0, nil, at, f.corrupt("bad length of field %d", tag)
	}
	f.pos += n
	value = f.b[f.pos : f.pos+int(l)]
	f.pos += int(l)
	return tag, value, at, nil
}

func uvarintValue(v []byte, file string, at int64, what string) (uint64, error) {
	x, n := binary.Uvarint(v)
	if n <= 0 || n != len(v) {
		return 0, errs.Corruptf(file, at, "bad %s", what)
	}
	return x, nil
}

func int64Value(v []byte, file string, at int64, what string) (int64, error) {
	x, err := uvarintValue(v, file, at, what)
	if err == nil && x > math.MaxInt64 {
		err = errs.Corruptf(file, at, "%s %d out of range", what, x)
	}
	return int64(x), err
}

func unknownTag(file string, at int64, tag uint64, where string) error {
	return &errs.VersionError{File: file, Offset: at, What: "required " + where + " field tag", Got: tag, Max: stSince}
}

// DecodePayload decodes a record payload found in file at offset base.
func DecodePayload(p []byte, file string, base int64) (Record, error) {
	var r Record
	if len(p) == 0 {
		return r, errs.Corruptf(file, base, "empty record")
	}
	r.Kind = Kind(p[0])
	if r.Kind != Full && r.Kind != Delta {
		return r, errs.Corruptf(file, base, "unknown record kind %d", p[0])
	}
	f := fieldReader{b: p, pos: 1, base: base, file: file}
	var have [tagRetained + 1]bool
	for f.pos < len(p) {
		tag, v, at, err := f.next()
		if err != nil {
			return r, err
		}
		if tag != tagState && tag != tagRemoved && tag < uint64(len(have)) {
			if have[tag] {
				return r, errs.Corruptf(file, at, "record field %d appears twice", tag)
			}
			have[tag] = true
		}
		switch tag {
		case tagSnapshot:
			r.Snapshot, err = uvarintValue(v, file, at, "snapshot ID")
		case tagTime:
			ns, n := binary.Varint(v)
			if n <= 0 || n != len(v) {
				err = errs.Corruptf(file, at, "bad time")
			}
			r.Time = time.Unix(0, ns).UTC()
		case tagState:
			var s StateRef
			s, err = decodeState(v, file, f.base+int64(f.pos-len(v)))
			r.States = append(r.States, s)
		case tagRemoved:
			r.Removed = append(r.Removed, string(v))
		case tagNextSegment:
			r.NextSegment, err = uvarintValue(v, file, at, "next segment ID")
		case tagWritten:
			r.Written, err = int64Value(v, file, at, "bytes written")
		case tagRetained:
			r.Retained, err = uvarintValue(v, file, at, "oldest retained snapshot")
		default:
			if tag < firstSkippableTag {
				err = unknownTag(file, at, tag, "record")
			}
		}
		if err != nil {
			return r, err
		}
	}
	if !have[tagSnapshot] || !have[tagTime] {
		return r, errs.Corruptf(file, base, "record lacks its snapshot ID or time")
	}
	if err := r.Validate(); err != nil {
		return r, errs.Corruptf(file, base, "%v", err)
	}
	return r, nil
}

func decodeState(v []byte, file string, base int64) (StateRef, error) {
	var s StateRef
	f := fieldReader{b: v, base: base, file: file}
	var have [stSince + 1]bool
	for f.pos < len(v) {
		tag, val, at, err := f.next()
		if err != nil {
			return s, err
		}
		if tag < uint64(len(have)) {
			if have[tag] {
				return s, errs.Corruptf(file, at, "state field %d appears twice", tag)
			}
			have[tag] = true
		}
		switch tag {
		case stName:
			s.Name = string(val)
		case stSegment:
			s.Segment, err = uvarintValue(val, file, at, "segment ID")
		case stOffset:
			s.Offset, err = int64Value(val, file, at, "offset")
		case stStoredLen:
			s.StoredLen, err = int64Value(val, file, at, "stored length")
		case stRawLen:
			s.RawLen, err = int64Value(val, file, at, "raw length")
		case stStoredSum, stRawSum:
			if len(val) != 8 {
				err = errs.Corruptf(file, at, "checksum field of %d bytes", len(val))
			} else if tag == stStoredSum {
				s.StoredSum = le.Uint64(val)
			} else {
				s.RawSum = le.Uint64(val)
			}
		case stSince:
			s.Since, err = uvarintValue(val, file, at, "snapshot ID")
		default:
			if tag < firstSkippableTag {
				err = unknownTag(file, at, tag, "state")
			}
		}
		if err != nil {
			return s, err
		}
	}
	for tag := stName; tag <= stSince; tag++ {
		if !have[tag] {
			return s, errs.Corruptf(file, base, "state %q lacks field %d", s.Name, tag)
		}
	}
	return s, nil
}
