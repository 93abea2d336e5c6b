// Package inspect is a read-only view of an instadump directory for
// tools: snapshots, states, values as JSON without their Go types,
// segments, manifest records, and a full verification. It never takes the
// lock, never repairs and never writes, so it works while the owning
// process has the DB open and is saving. The instadump-inspect command is
// a thin shell over it.
//
// Open is its one way in: a read-only engine that holds every file it
// reads open, so what it shows is one consistent view even while the
// owner saves, rolls its manifest over and deletes old segments.
package inspect

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/instadump/instadump/engine"
	"github.com/instadump/instadump/internal/errs"
)

// DB is a directory opened read-only.
type DB struct {
	eng     *engine.Engine
	warning error
}

// Open opens dir read-only. If the current snapshot's data (or the
// manifest, or its last record) is damaged it opens the newest intact
// retained snapshot instead, and Warning says what is damaged; if nothing is intact it
// fails. A directory that holds no DB is an error wrapping ErrNotDB.
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
	rep := eng.Report()
	if rep.DamagedTail != nil {
		return &DB{eng: eng, warning: fmt.Errorf("the last manifest record is damaged, showing snapshot %d, the newest intact one before it: %w", rep.UsedID, err)}, nil
	}
	return &DB{eng: eng, warning: fmt.Errorf("the current snapshot is damaged, showing snapshot %d instead: %w", rep.UsedID, err)}, nil
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
	Segments []uint64  `json:"segments"` // the segments it uses
}

// Snapshots returns the retained snapshots, oldest first: all those the
// owner retains, as its manifest says.
func (d *DB) Snapshots() []Snapshot {
	var out []Snapshot
	for _, s := range d.eng.Snapshots() {
		states, _ := d.eng.States(s.ID)
		out = append(out, Snapshot{ID: s.ID, Time: s.Time, States: s.States, Bytes: s.Written, Segments: engine.SegmentsOf(states)})
	}
	return out
}

// ErrNoKey: the map state has no such key. The other errors of this
// package but ErrNotMap are those of package instadump: ErrNotDB, ErrNoSnapshot,
// ErrNoState, ErrCorrupt, ErrUnsupportedVersion.
var ErrNoKey = errors.New("instadump: no such key")

// ErrNotMap: a key was asked of a state that is not a Map and whose
// value is not a map either.
var ErrNotMap = errors.New("instadump: the state is not a Map")

func (d *DB) states(id uint64) (engine.Snapshot, map[string]engine.Ref, error) {
	s, ok := d.eng.Snapshot(id)
	if !ok {
		if id == 0 {
			return s, nil, fmt.Errorf("%w: %s has no snapshot", errs.ErrNoSnapshot, d.eng.Dir())
		}
		return s, nil, fmt.Errorf("%w: snapshot %d is not retained in %s", errs.ErrNoSnapshot, id, d.eng.Dir())
	}
	states, _ := d.eng.States(s.ID)
	return s, states, nil
}

func (d *DB) state(id uint64, name string) (engine.Ref, error) {
	s, states, err := d.states(id)
	if err != nil {
		return engine.Ref{}, err
	}
	r, ok := states[name]
	if !ok {
		return r, fmt.Errorf("%w: snapshot %d has no state %q", errs.ErrNoState, s.ID, name)
	}
	return r, nil
}

// State describes one state in a snapshot.
type State struct {
	Name      string   `json:"name"`
	Kind      string   `json:"kind"`          // "value" or "map"
	Encoded   int64    `json:"encoded_bytes"` // msgpack, summed over a map's parts and deltas
	Stored    int64    `json:"stored_bytes"`  // on disk
	Segments  []uint64 `json:"segments"`      // where it is
	ChangedIn uint64   `json:"changed_in"`    // the snapshot that last changed it
	Entries   int64    `json:"entries,omitempty"`
	Parts     int      `json:"base_parts,omitempty"` // a map's base parts
	Deltas    int      `json:"deltas,omitempty"`     // a map's chain of deltas
	Schema    uint64   `json:"schema,omitempty"`
}

// States lists the states of snapshot id (0: the current one), by name.
func (d *DB) States(id uint64) ([]State, error) {
	_, states, err := d.states(id)
	if err != nil {
		return nil, err
	}
	out := []State{}
	for _, name := range slices.Sorted(maps.Keys(states)) {
		r := states[name]
		st := State{Name: name, Kind: r.Kind.String(), ChangedIn: r.Since, Schema: r.Schema, Segments: engine.SegmentsOf(map[string]engine.Ref{name: r})}
		for l := range r.Locs() {
			st.Encoded += l.RawLen
			st.Stored += l.StoredLen
		}
		if r.Kind == engine.MapState {
			st.Entries, st.Parts, st.Deltas = r.Entries, len(r.Base), len(r.Deltas)
		}
		out = append(out, st)
	}
	return out, nil
}

// WriteJSON writes state name of snapshot id (0: the current one) to w as
// JSON, without its Go type (see the package doc), streamed from its
// msgpack bytes. A map inside a value has its keys sorted; a Map state's
// entries come in the order stored (its base, then what its chain set),
// holding one base part in memory at a time.
func (d *DB) WriteJSON(w io.Writer, id uint64, name string) error {
	r, err := d.state(id, name)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	if err := d.writeState(&jsonWriter{w: bw}, r, 0); err != nil {
		return fmt.Errorf("state %q: %w", name, err)
	}
	bw.WriteByte('\n')
	return bw.Flush()
}

func (d *DB) writeState(j *jsonWriter, r engine.Ref, indent int) error {
	if r.Kind == engine.MapState { // streamed, in the order stored
		n := 0
		j.w.WriteByte('{')
		err := d.eachMapEntry(r, func(k, v []byte) error {
			t, err := keyText(k, 0)
			if err == nil {
				err = j.member(n, t, v, 0, indent)
			}
			n++
			return err
		})
		if err != nil {
			return err
		}
		j.close('}', n, indent)
		return nil
	}
	raw, err := d.eng.Read(r.Value)
	if err != nil {
		return err
	}
	rd := &reader{b: raw}
	if err := j.value(rd, 0, indent); err != nil {
		return err
	}
	if rd.pos != len(raw) {
		return rd.fail("%d bytes after the value", len(raw)-rd.pos)
	}
	return nil
}

// WriteDump writes every state of snapshot id (0: the current one) to w
// as one JSON object, by name, streamed.
func (d *DB) WriteDump(w io.Writer, id uint64) error {
	_, states, err := d.states(id)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	j := &jsonWriter{w: bw}
	names := slices.Sorted(maps.Keys(states))
	bw.WriteByte('{')
	for i, name := range names {
		if i > 0 {
			bw.WriteByte(',')
		}
		j.newline(1)
		j.str([]byte(name))
		bw.WriteString(": ")
		if err := d.writeState(j, states[name], 1); err != nil {
			return fmt.Errorf("state %q: %w", name, err)
		}
	}
	if len(names) > 0 {
		j.newline(0)
	}
	bw.WriteString("}\n")
	return bw.Flush()
}

// WriteKeyJSON writes the value under key of state name of snapshot id
// (0: the current one) to w as JSON: name is a Map, or a value state
// holding a map. key matches a string key, as is or as a JSON string, or
// another key written as JSON, in any spelling (42, 4.2e1 or 42.0 for an
// integer key; an object's members in any order, spaces anywhere); a key
// whose text is key as it is, found or deleted, comes first. Only that
// entry is turned into JSON.
func (d *DB) WriteKeyJSON(w io.Writer, id uint64, name, key string) error {
	r, err := d.state(id, name)
	if err != nil {
		return err
	}
	val, err := d.lookupKey(r, name, key)
	if errors.Is(err, ErrNotMap) {
		return err // names the state
	}
	if err != nil {
		return fmt.Errorf("state %q: %w", name, err)
	}
	bw := bufio.NewWriter(w)
	if err := (&jsonWriter{w: bw}).value(&reader{b: val}, 0, 0); err != nil {
		return fmt.Errorf("state %q, key %q: %w", name, key, err)
	}
	bw.WriteByte('\n')
	return bw.Flush()
}

// Difference is a state that differs between two snapshots.
type Difference struct {
	Name   string `json:"name"`
	Change string `json:"change"` // "added", "removed" or "changed"
}

// Diff returns the states that differ between snapshots a and b, by name.
// Values written again unchanged do not count.
func (d *DB) Diff(a, b uint64) ([]Difference, error) {
	_, sa, err := d.states(a)
	if err != nil {
		return nil, err
	}
	_, sb, err := d.states(b)
	if err != nil {
		return nil, err
	}
	out := []Difference{}
	for _, name := range slices.Sorted(maps.Keys(sb)) {
		ra, ok := sa[name]
		switch {
		case !ok:
			out = append(out, Difference{name, "added"})
		default:
			same, err := d.sameContent(ra, sb[name])
			if err != nil {
				return nil, err
			}
			if !same {
				out = append(out, Difference{name, "changed"})
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(sa)) {
		if _, ok := sb[name]; !ok {
			out = append(out, Difference{name, "removed"})
		}
	}
	slices.SortStableFunc(out, func(x, y Difference) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}

// sameContent says whether two states hold the same bytes.
func (d *DB) sameContent(a, b engine.Ref) (bool, error) {
	same := func(x, y *engine.Loc) bool { return *x == *y }
	if slices.EqualFunc(slices.Collect(a.Locs()), slices.Collect(b.Locs()), same) {
		return true, nil
	}
	if a.Kind != b.Kind || a.Kind == engine.MapState {
		return false, nil // a map written again differs, as far as a diff can cheaply tell
	}
	if a.Value.RawLen != b.Value.RawLen || a.Value.RawSum != b.Value.RawSum {
		return false, nil
	}
	x, err := d.eng.Read(a.Value)
	if err != nil {
		return false, err
	}
	y, err := d.eng.Read(b.Value)
	if err != nil {
		return false, err
	}
	return bytes.Equal(x, y), nil
}
