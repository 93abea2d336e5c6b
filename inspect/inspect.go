// Package inspect is a read-only view of an instadump directory for
// tools: snapshots, states, values decoded without their Go types,
// segments, manifest records, and a full verification. It never takes the
// lock, never repairs and never writes, so it works while the owning
// process has the DB open and is saving. The instadump-inspect command is
// a thin shell over it.
package inspect

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/instadump/instadump/engine"
	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
	"github.com/vmihailenco/msgpack/v5"
)

// DB is a directory opened read-only.
type DB struct {
	eng     *engine.Engine
	warning error
}

// Open opens dir read-only. If the current snapshot's data is damaged it
// opens the newest intact retained snapshot instead and Warning says
// what is damaged; if nothing is intact it fails.
func Open(dir string) (*DB, error) {
	eng, err := engine.Open(dir, engine.Options{ReadOnly: true})
	if err == nil {
		return &DB{eng: eng}, nil
	}
	if !errors.Is(err, errs.ErrCorrupt) {
		return nil, err
	}
	eng, ferr := engine.Open(dir, engine.Options{ReadOnly: true, Fallback: true})
	if ferr != nil {
		return nil, err
	}
	return &DB{eng: eng, warning: fmt.Errorf("the current snapshot is damaged, showing snapshot %d instead: %w", eng.Report().UsedID, err)}, nil
}

// Warning returns the damage Open worked around, or nil.
func (d *DB) Warning() error { return d.warning }

// Close closes the DB.
func (d *DB) Close() error { return d.eng.Close() }

// Snapshot describes a retained snapshot.
type Snapshot struct {
	ID       uint64    `json:"id"`
	Time     time.Time `json:"time"`
	States   int       `json:"states"`
	Bytes    int64     `json:"bytes_written"`
	Segments []uint64  `json:"segments"`
}

// Snapshots returns the retained snapshots, oldest first.
func (d *DB) Snapshots() []Snapshot {
	var out []Snapshot
	for _, s := range d.eng.Snapshots() {
		segs := map[uint64]bool{}
		for _, st := range s.States {
			segs[st.Segment] = true
		}
		ids := make([]uint64, 0, len(segs))
		for id := range segs {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		out = append(out, Snapshot{ID: s.ID, Time: s.Time, States: len(s.States), Bytes: s.Written, Segments: ids})
	}
	return out
}

// ErrNoSnapshot: the snapshot asked for is not retained (or there is none).
var ErrNoSnapshot = errors.New("no such snapshot")

func (d *DB) snapshot(id uint64) (manifest.Snapshot, error) {
	if id == 0 {
		if s, ok := d.eng.Current(); ok {
			return s, nil
		}
		return manifest.Snapshot{}, fmt.Errorf("%w: %s has no snapshot", ErrNoSnapshot, d.eng.Dir())
	}
	if s, ok := d.eng.Snapshot(id); ok {
		return s, nil
	}
	return manifest.Snapshot{}, fmt.Errorf("%w: snapshot %d is not retained in %s", ErrNoSnapshot, id, d.eng.Dir())
}

// State describes one state in a snapshot.
type State struct {
	Name      string `json:"name"`
	Encoded   int64  `json:"encoded_bytes"` // msgpack
	Stored    int64  `json:"stored_bytes"`  // on disk
	Segment   uint64 `json:"segment"`
	Offset    int64  `json:"offset"`
	ChangedIn uint64 `json:"changed_in"` // the snapshot that last changed it
}

// States lists the states of snapshot id (0: the current one), by name.
func (d *DB) States(id uint64) ([]State, error) {
	s, err := d.snapshot(id)
	if err != nil {
		return nil, err
	}
	var out []State
	for name, ref := range s.States {
		out = append(out, State{Name: name, Encoded: ref.RawLen, Stored: ref.StoredLen, Segment: ref.Segment, Offset: ref.Offset, ChangedIn: ref.Since})
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out, nil
}

// ErrNoState: the snapshot has no state of that name.
var ErrNoState = errors.New("no such state")

// Raw returns the verified msgpack bytes of state name in snapshot id (0:
// the current one).
func (d *DB) Raw(id uint64, name string) ([]byte, error) {
	s, err := d.snapshot(id)
	if err != nil {
		return nil, err
	}
	ref, ok := s.States[name]
	if !ok {
		return nil, fmt.Errorf("%w: snapshot %d has no state %q", ErrNoState, s.ID, name)
	}
	return d.eng.Read(ref)
}

// Value returns state name of snapshot id decoded without its Go type,
// ready for encoding/json: maps (keys as strings), arrays, strings,
// numbers, booleans, nil, binary as []byte (base64 in JSON), timestamps as
// RFC 3339 strings.
func (d *DB) Value(id uint64, name string) (any, error) {
	raw, err := d.Raw(id, name)
	if err != nil {
		return nil, err
	}
	v, err := Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("state %q: %w", name, err)
	}
	return v, nil
}

// Decode decodes msgpack bytes without a Go type, as Value does.
func Decode(raw []byte) (any, error) {
	br := bytes.NewReader(raw) // an io.ByteScanner: the decoder reads it directly
	dec := msgpack.NewDecoder(br)
	// Keys may be of any type; jsonable makes them strings.
	dec.SetMapDecoder(func(d *msgpack.Decoder) (any, error) { return d.DecodeUntypedMap() })
	v, err := dec.DecodeInterface()
	if err != nil {
		return nil, fmt.Errorf("not valid msgpack: %w", err)
	}
	if br.Len() > 0 {
		return nil, fmt.Errorf("not valid msgpack: %d bytes after the value", br.Len())
	}
	return jsonable(v), nil
}

func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
		return x
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(jsonable(k))] = jsonable(e)
		}
		return out
	case []any:
		for i := range x {
			x[i] = jsonable(x[i])
		}
		return x
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Sprint(x)
		}
	case float32:
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fmt.Sprint(x)
		}
	}
	return v
}

// Difference is a state that differs between two snapshots.
type Difference struct {
	Name   string `json:"name"`
	Change string `json:"change"` // "added", "removed" or "changed"
}

// Diff returns the states that differ between snapshots a and b, by name.
// Values written again unchanged do not count.
func (d *DB) Diff(a, b uint64) ([]Difference, error) {
	sa, err := d.snapshot(a)
	if err != nil {
		return nil, err
	}
	sb, err := d.snapshot(b)
	if err != nil {
		return nil, err
	}
	var out []Difference
	for name, rb := range sb.States {
		ra, ok := sa.States[name]
		switch {
		case !ok:
			out = append(out, Difference{name, "added"})
		case ra == rb:
		case ra.RawLen != rb.RawLen:
			out = append(out, Difference{name, "changed"})
		default:
			x, err := d.eng.Read(ra)
			if err != nil {
				return nil, err
			}
			y, err := d.eng.Read(rb)
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(x, y) {
				out = append(out, Difference{name, "changed"})
			}
		}
	}
	for name := range sa.States {
		if _, ok := sb.States[name]; !ok {
			out = append(out, Difference{name, "removed"})
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out, nil
}

// Segment describes a segment file.
type Segment struct {
	ID        uint64   `json:"id"`
	File      string   `json:"file"`
	Size      int64    `json:"size"`
	Live      int64    `json:"live_bytes"` // values retained snapshots reference, with their index entries
	DeadShare float64  `json:"dead_share"` // of the bytes past the fixed header and trailer
	Snapshots []uint64 `json:"snapshots"`  // retained snapshots referencing it
	Orphan    bool     `json:"orphan"`     // no retained snapshot references it
}

// Segments lists every segment file in the directory.
func (d *DB) Segments() ([]Segment, error) {
	files, err := d.eng.SegmentFiles()
	if err != nil {
		return nil, err
	}
	snaps := d.eng.Snapshots()
	liveBy := engine.LiveBytes(snaps)
	refs := map[uint64][]uint64{}
	for _, s := range snaps {
		seen := map[uint64]bool{}
		for _, ref := range s.States {
			if !seen[ref.Segment] {
				seen[ref.Segment] = true
				refs[ref.Segment] = append(refs[ref.Segment], s.ID)
			}
		}
	}
	var out []Segment
	for _, f := range files {
		s := Segment{ID: f.ID, File: f.Name, Size: f.Size, Live: liveBy[f.ID], Snapshots: refs[f.ID], Orphan: len(refs[f.ID]) == 0}
		slices.Sort(s.Snapshots)
		if body := f.Size - segment.MinFileSize; body > 0 {
			s.DeadShare = float64(body-s.Live) / float64(body)
		}
		out = append(out, s)
	}
	return out, nil
}

// Record is one manifest record.
type Record struct {
	Offset   int64     `json:"offset"`
	Kind     string    `json:"kind"`
	Snapshot uint64    `json:"snapshot"`
	Time     time.Time `json:"time"`
	States   int       `json:"states"`  // written or moved in this record
	Removed  int       `json:"removed"` // states dropped
	Bytes    int64     `json:"bytes_written"`
}

// Manifest is the live manifest.
type Manifest struct {
	Path     string
	Records  []Record
	TornTail error // the torn tail a crash left, ignored; nil if none
}

// Manifest reads the live manifest.
func (d *DB) Manifest() (Manifest, error) {
	rep, path, err := d.eng.ReadManifest()
	if err != nil {
		return Manifest{Path: path}, err
	}
	m := Manifest{Path: path, TornTail: rep.TailErr}
	for i, r := range rep.Records {
		m.Records = append(m.Records, Record{Offset: rep.Offsets[i], Kind: r.Kind.String(), Snapshot: r.Snapshot, Time: r.Time,
			States: len(r.States), Removed: len(r.Removed), Bytes: r.Written})
	}
	return m, nil
}

// Verify checks every checksum of every file the DB uses: CURRENT, the
// manifest, and every byte of every segment a retained snapshot
// references, and that each state is where its segment's index says. It
// returns every problem found, each naming its file and offset (empty if
// the DB is intact). progress, if not nil, is called as segment bytes are
// checked. It does not need Open to succeed: a DB that does not open is
// reported as a problem.
func Verify(dir string, progress func(done, total int64)) []error {
	// The owner may delete a file between our reading the manifest and
	// opening the file: then start over, for a while.
	deadline := time.Now().Add(10 * time.Second)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		problems := verify(dir, progress)
		missing := false
		for _, p := range problems {
			missing = missing || errors.Is(p, engine.ErrFileMissing)
		}
		if !missing || time.Now().After(deadline) {
			return problems
		}
		time.Sleep(wait)
	}
}

func verify(dir string, progress func(done, total int64)) []error {
	eng, err := engine.Open(dir, engine.Options{ReadOnly: true})
	if err != nil {
		return []error{err}
	}
	defer eng.Close()
	var problems []error
	if _, _, err := eng.ReadManifest(); err != nil {
		problems = append(problems, err)
	}
	snaps := eng.Snapshots()
	segs := map[uint64]bool{}
	for i := range snaps {
		problems = append(problems, eng.CheckSnapshot(&snaps[i], false)...)
		for _, st := range snaps[i].States {
			segs[st.Segment] = true
		}
	}
	ids := make([]uint64, 0, len(segs))
	for id := range segs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var total, done int64
	readers := map[uint64]*segment.Reader{}
	for _, id := range ids {
		r, err := eng.Segment(id)
		if err != nil {
			continue // CheckSnapshot reported it
		}
		readers[id] = r
		total += r.Size()
	}
	for _, id := range ids {
		r := readers[id]
		if r == nil {
			continue
		}
		for _, e := range r.Entries() {
			if _, err := r.Read(e); err != nil {
				problems = append(problems, err)
				break // one problem a segment: the rest may be fine, but say where first
			}
			done += e.StoredLen
			if progress != nil {
				progress(done, total)
			}
		}
		done += r.Size() - sumStored(r.Entries())
		if progress != nil {
			progress(done, total)
		}
	}
	return problems
}

func sumStored(es []segment.Entry) int64 {
	var n int64
	for _, e := range es {
		n += e.StoredLen
	}
	return n
}
