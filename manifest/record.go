package manifest

import (
	"encoding/binary"
	"fmt"
	"iter"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/instadump/instadump/internal/errs"
)

// Loc locates one value in a segment: a value state's value, or one part
// or delta of a map state.
type Loc struct {
	Segment   uint64
	Name      string // the value's entry name in the segment
	Offset    int64  // of the value's first chunk header
	StoredLen int64  // bytes on disk, chunk headers included
	RawLen    int64  // bytes of the raw value
	StoredSum uint64 // xxhash64 of the stored bytes
	RawSum    uint64 // xxhash64 of the raw bytes
}

// State is one state in a record: where its value lives.
type State struct {
	Name    string
	Kind    StateKind // ValueState or MapState
	Value   Loc       // ValueState: the value (its Name is the state's)
	Base    []Loc     // MapState: the base, in parts
	Deltas  []Loc     // MapState: the deltas after the base, oldest first
	Entries int64     // MapState: entries in the map
	Since   uint64    // the snapshot that last wrote the state
	Schema  uint64    // the schema version of the stored value
}

// Locs yields every value s uses, in order: a value state's one, or a
// map state's base parts, then its deltas oldest first.
func (s *State) Locs() iter.Seq[*Loc] {
	return func(yield func(*Loc) bool) {
		if s.Kind == ValueState {
			yield(&s.Value)
			return
		}
		for i := range s.Base {
			if !yield(&s.Base[i]) {
				return
			}
		}
		for i := range s.Deltas {
			if !yield(&s.Deltas[i]) {
				return
			}
		}
	}
}

// Record is one commit record.
type Record struct {
	Kind        Kind
	Snapshot    uint64
	Time        time.Time
	NextSegment uint64   // 0 when not recorded
	Written     int64    // bytes of the segment this snapshot wrote; 0 if none
	Retained    uint64   // the oldest snapshot the writer retains with this one; 0 if not recorded
	States      []State  // Full: every state; Delta: those written or moved
	Removed     []string // Delta only: states dropped
}

// The times a record can hold: nanoseconds since 1970 in an int64.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

func checkName(what, name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("manifest: %s name of %d bytes, want 1 to %d", what, len(name), MaxNameLen)
	}
	return nil
}

func (l *Loc) validate() error {
	if err := checkName("entry", l.Name); err != nil {
		return err
	}
	if l.Segment == 0 || l.Offset < 0 || l.StoredLen < 0 || l.RawLen < 0 {
		return fmt.Errorf("manifest: impossible location %+v", *l)
	}
	return nil
}

func (s *State) validate(snapshot uint64) error {
	if err := checkName("state", s.Name); err != nil {
		return err
	}
	if s.Since == 0 || s.Since > snapshot {
		return fmt.Errorf("manifest: state %q written in snapshot %d, not in 1..%d", s.Name, s.Since, snapshot)
	}
	switch s.Kind {
	case ValueState:
		if s.Value.Name != s.Name || len(s.Base) > 0 || len(s.Deltas) > 0 || s.Entries != 0 {
			return fmt.Errorf("manifest: value state %q with map fields or another entry name", s.Name)
		}
		return s.Value.validate()
	case MapState:
		if len(s.Base) == 0 || s.Entries < 0 || s.Value != (Loc{}) {
			return fmt.Errorf("manifest: map state %q needs a base and no value location", s.Name)
		}
		for _, locs := range [][]Loc{s.Base, s.Deltas} {
			for i := range locs {
				if err := locs[i].validate(); err != nil {
					return fmt.Errorf("%w (map state %q)", err, s.Name)
				}
			}
		}
		return nil
	}
	return fmt.Errorf("manifest: state %q of kind %d", s.Name, s.Kind)
}

// Validate checks that r can be written: what a reader would refuse, the
// writer refuses too.
func (r *Record) Validate() error {
	switch {
	case r.Kind != Full && r.Kind != Delta:
		return fmt.Errorf("manifest: record kind %d", r.Kind)
	case r.Snapshot == 0:
		return fmt.Errorf("manifest: record has snapshot ID 0")
	case r.Retained > r.Snapshot:
		return fmt.Errorf("manifest: snapshot %d says it retains from snapshot %d on", r.Snapshot, r.Retained)
	case r.Written < 0:
		return fmt.Errorf("manifest: record says %d bytes written", r.Written)
	case r.Time.Before(minTime) || r.Time.After(maxTime):
		return fmt.Errorf("manifest: record time %v outside the years 1678 to 2262", r.Time)
	case r.Kind == Full && len(r.Removed) > 0:
		return fmt.Errorf("manifest: a full record cannot remove states")
	}
	for i := range r.States {
		if err := r.States[i].validate(r.Snapshot); err != nil {
			return err
		}
	}
	for _, n := range r.Removed {
		if err := checkName("removed state", n); err != nil {
			return err
		}
	}
	twice := func(n string, removed bool) error {
		if removed {
			return fmt.Errorf("manifest: state %q both written and removed, or removed twice, in snapshot %d", n, r.Snapshot)
		}
		return fmt.Errorf("manifest: state %q appears twice in snapshot %d", n, r.Snapshot)
	}
	// Names each once: by a merge when both lists are sorted, as the
	// engine writes them (a set of 100k names costs megabytes), else by
	// a set.
	sorted := slices.IsSortedFunc(r.States, func(a, b State) int { return strings.Compare(a.Name, b.Name) }) && slices.IsSorted(r.Removed)
	if !sorted {
		seen := make(map[string]bool, len(r.States)+len(r.Removed))
		for i := range r.States {
			if seen[r.States[i].Name] {
				return twice(r.States[i].Name, false)
			}
			seen[r.States[i].Name] = true
		}
		for _, n := range r.Removed {
			if seen[n] {
				return twice(n, true)
			}
			seen[n] = true
		}
		return nil
	}
	for i := 1; i < len(r.States); i++ {
		if r.States[i].Name == r.States[i-1].Name {
			return twice(r.States[i].Name, false)
		}
	}
	for i, s := 0, 0; i < len(r.Removed); i++ {
		n := r.Removed[i]
		if i > 0 && n == r.Removed[i-1] {
			return twice(n, true)
		}
		for s < len(r.States) && r.States[s].Name < n {
			s++
		}
		if s < len(r.States) && r.States[s].Name == n {
			return twice(n, true)
		}
	}
	return nil
}

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

// appendLoc appends l's fields 2 to 7 (and its name, when withName).
func appendLoc(b []byte, l *Loc, withName bool) []byte {
	if withName {
		b = appendField(b, stName, []byte(l.Name))
	}
	b = appendUvarintField(b, stSegment, l.Segment)
	b = appendUvarintField(b, stOffset, uint64(l.Offset))
	b = appendUvarintField(b, stStoredLen, uint64(l.StoredLen))
	b = appendUvarintField(b, stRawLen, uint64(l.RawLen))
	b = appendFixedField(b, stStoredSum, l.StoredSum)
	return appendFixedField(b, stRawSum, l.RawSum)
}

func appendState(b []byte, s *State) []byte {
	b = appendField(b, stName, []byte(s.Name))
	if s.Kind == ValueState {
		b = appendLoc(b, &s.Value, false)
	}
	b = appendUvarintField(b, stSince, s.Since)
	if s.Kind == MapState {
		b = appendUvarintField(b, stKind, uint64(MapState))
		var loc []byte
		for i := range s.Base {
			loc = appendLoc(loc[:0], &s.Base[i], true)
			b = appendField(b, stBase, loc)
		}
		for i := range s.Deltas {
			loc = appendLoc(loc[:0], &s.Deltas[i], true)
			b = appendField(b, stDelta, loc)
		}
		b = appendUvarintField(b, stEntries, uint64(s.Entries))
	}
	if s.Schema != 0 {
		b = appendUvarintField(b, stSchema, s.Schema)
	}
	return b
}

// AppendPayload appends r's payload encoding to b.
func (r *Record) AppendPayload(b []byte) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	// A value state takes some 50 bytes beside its name: grow once, not
	// by doubling through a record of many states.
	b = slices.Grow(b, 64+len(r.States)*64)
	b = append(b, byte(r.Kind))
	b = appendUvarintField(b, tagSnapshot, r.Snapshot)
	b = appendField(b, tagTime, binary.AppendVarint(nil, r.Time.UnixNano()))
	var st []byte
	for i := range r.States {
		st = appendState(st[:0], &r.States[i])
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

// field is one tag-length-value field, with the file offsets of its tag
// and of its value.
type field struct {
	tag       uint64
	v         []byte
	at, value int64
}

// fields walks the tag-length-value fields of b, whose first byte is at
// file offset base, calling fn for each. A required tag (below 64) that
// is not in repeated may appear once; fn decides what is unknown.
func fields(b []byte, base int64, file string, repeated uint64, fn func(f field) error) (seen uint64, err error) {
	for pos := 0; pos < len(b); {
		at := base + int64(pos)
		tag, n := binary.Uvarint(b[pos:])
		if n <= 0 {
			return seen, errs.Corruptf(file, at, "bad field tag")
		}
		pos += n
		l, n := binary.Uvarint(b[pos:])
		if n <= 0 || l > uint64(len(b)-pos-n) {
			return seen, errs.Corruptf(file, at, "bad length of field %d", tag)
		}
		pos += n
		if tag < firstSkippableTag {
			if bit := uint64(1) << tag; repeated&bit == 0 {
				if seen&bit != 0 {
					return seen, errs.Corruptf(file, at, "field %d appears twice", tag)
				}
				seen |= bit
			}
		}
		if err := fn(field{tag: tag, v: b[pos : pos+int(l)], at: at, value: base + int64(pos)}); err != nil {
			return seen, err
		}
		pos += int(l)
	}
	return seen, nil
}

func (f field) uvarint(file, what string) (uint64, error) {
	x, n := binary.Uvarint(f.v)
	if n <= 0 || n != len(f.v) {
		return 0, errs.Corruptf(file, f.at, "bad %s", what)
	}
	return x, nil
}

func (f field) int64(file, what string) (int64, error) {
	x, err := f.uvarint(file, what)
	if err == nil && x > math.MaxInt64 {
		err = errs.Corruptf(file, f.at, "%s %d out of range", what, x)
	}
	return int64(x), err
}

func (f field) fixed64(file string) (uint64, error) {
	if len(f.v) != 8 {
		return 0, errs.Corruptf(file, f.at, "checksum field of %d bytes", len(f.v))
	}
	return le.Uint64(f.v), nil
}

func unknownTag(file string, f field, where string) error {
	if f.tag >= firstSkippableTag {
		return nil
	}
	return &errs.VersionError{File: file, Offset: f.at, What: "required " + where + " field tag", Got: f.tag, Max: stEntries}
}

// locField decodes the location fields 1 to 7 into l; it reports false
// for any other tag.
func locField(f field, file string, l *Loc) (bool, error) {
	var err error
	switch f.tag {
	case stName:
		l.Name = string(f.v)
	case stSegment:
		l.Segment, err = f.uvarint(file, "segment ID")
	case stOffset:
		l.Offset, err = f.int64(file, "offset")
	case stStoredLen:
		l.StoredLen, err = f.int64(file, "stored length")
	case stRawLen:
		l.RawLen, err = f.int64(file, "raw length")
	case stStoredSum:
		l.StoredSum, err = f.fixed64(file)
	case stRawSum:
		l.RawSum, err = f.fixed64(file)
	default:
		return false, nil
	}
	return true, err
}

// locTags are the fields of a location, all required.
const locTags = 1<<stName | 1<<stSegment | 1<<stOffset | 1<<stStoredLen | 1<<stRawLen | 1<<stStoredSum | 1<<stRawSum

func decodeLoc(f field, file string) (Loc, error) {
	var l Loc
	seen, err := fields(f.v, f.value, file, 0, func(g field) error {
		if ok, err := locField(g, file, &l); ok || err != nil {
			return err
		}
		return unknownTag(file, g, "location")
	})
	if err == nil && seen&locTags != locTags {
		err = errs.Corruptf(file, f.at, "location lacks a required field")
	}
	return l, err
}

func decodeState(f field, file string) (State, error) {
	s := State{Kind: ValueState}
	seen, err := fields(f.v, f.value, file, 1<<stBase|1<<stDelta, func(g field) error {
		if ok, err := locField(g, file, &s.Value); ok || err != nil {
			return err
		}
		var err error
		switch g.tag {
		case stSince:
			s.Since, err = g.uvarint(file, "snapshot ID")
		case stKind:
			var k uint64
			if k, err = g.uvarint(file, "state kind"); err == nil {
				if k != uint64(ValueState) && k != uint64(MapState) {
					return &errs.VersionError{File: file, Offset: g.at, What: "state kind", Got: k, Max: uint64(MapState)}
				}
				s.Kind = StateKind(k)
			}
		case stBase, stDelta:
			var l Loc
			if l, err = decodeLoc(g, file); err == nil {
				if g.tag == stBase {
					s.Base = append(s.Base, l)
				} else {
					s.Deltas = append(s.Deltas, l)
				}
			}
		case stEntries:
			s.Entries, err = g.int64(file, "entry count")
		case stSchema:
			s.Schema, err = g.uvarint(file, "schema version")
		default:
			err = unknownTag(file, g, "state")
		}
		return err
	})
	if err != nil {
		return s, err
	}
	s.Name = s.Value.Name // tag 1 is both the state's and the value's name
	required := uint64(1<<stName | 1<<stSince)
	if s.Kind == ValueState {
		required |= locTags
	} else {
		if seen&(locTags&^(1<<stName)) != 0 {
			return s, errs.Corruptf(file, f.at, "map state %q has a value location", s.Name)
		}
		required |= 1 << stEntries
		s.Value = Loc{}
	}
	if seen&required != required {
		return s, errs.Corruptf(file, f.at, "state %q lacks a required field", s.Name)
	}
	return s, nil
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
	seen, err := fields(p[1:], base+1, file, 1<<tagState|1<<tagRemoved, func(f field) error {
		var err error
		switch f.tag {
		case tagSnapshot:
			r.Snapshot, err = f.uvarint(file, "snapshot ID")
		case tagTime:
			ns, n := binary.Varint(f.v)
			if n <= 0 || n != len(f.v) {
				err = errs.Corruptf(file, f.at, "bad time")
			}
			r.Time = time.Unix(0, ns).UTC()
		case tagState:
			var s State
			if s, err = decodeState(f, file); err == nil {
				r.States = append(r.States, s)
			}
		case tagRemoved:
			r.Removed = append(r.Removed, string(f.v))
		case tagNextSegment:
			r.NextSegment, err = f.uvarint(file, "next segment ID")
		case tagWritten:
			r.Written, err = f.int64(file, "bytes written")
		case tagRetained:
			r.Retained, err = f.uvarint(file, "oldest retained snapshot")
		default:
			err = unknownTag(file, f, "record")
		}
		return err
	})
	if err != nil {
		return r, err
	}
	if seen&(1<<tagSnapshot|1<<tagTime) != 1<<tagSnapshot|1<<tagTime {
		return r, errs.Corruptf(file, base, "record lacks its snapshot ID or time")
	}
	if err := r.Validate(); err != nil {
		return r, errs.Corruptf(file, base, "%v", err)
	}
	return r, nil
}
