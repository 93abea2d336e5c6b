package replica

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/fileheader"
	"github.com/instadump/instadump/manifest"
)

// These constants are part of the format and must not change.
const (
	// CommitMagic starts every commit object.
	CommitMagic = "\x89IDSNP\r\n"
	// OwnerMagic starts every owner record.
	OwnerMagic = "\x89IDOWN\r\n"
	// FormatVersion is the version of commit objects and owner records
	// this package writes and reads.
	FormatVersion = 1

	// commitFixed is the size of a commit object's fixed part, before its
	// segment list.
	commitFixed = fileheader.Size + 48
	// segRefSize is the size of one entry of the segment list.
	segRefSize = 32
	// sumSize is the size of the checksum that ends an object.
	sumSize = 8
	// OwnerSize is the size of an owner record.
	OwnerSize = fileheader.Size + 56

	// MaxCommitSegments bounds the segment list of a commit object.
	MaxCommitSegments = 1 << 20
	// MaxCommitSize bounds the size of a commit object.
	MaxCommitSize = commitFixed + segRefSize*MaxCommitSegments + manifest.MaxRecordSize + sumSize
)

var le = binary.LittleEndian

// Commit is a commit object: it commits one snapshot of a lineage to the
// store, once every segment it lists is there. See the package doc for
// its encoding.
type Commit struct {
	Lineage  Lineage
	Snapshot uint64 // the snapshot's ID, as in Record
	// Prev is the snapshot of the commit object this one follows in its
	// lineage (0: none), and PrevSum that object's checksum (its last 8
	// bytes): a delta applies to exactly that object's snapshot.
	Prev    uint64
	PrevSum uint64
	// Base is the snapshot of the full commit object this one's chain of
	// deltas starts from: Snapshot itself when Record is full.
	Base uint64
	// Segments are every segment the snapshot uses, by ID.
	Segments []SegmentRef
	// Record is the snapshot as a manifest record: full (every state), or
	// a delta against Prev's snapshot.
	Record manifest.Record
}

// Full says whether c holds the whole snapshot.
func (c *Commit) Full() bool { return c.Record.Kind == manifest.Full }

// validate checks what Encode refuses and DecodeCommit reports as
// corruption, but for the record's own rules.
func (c *Commit) validate() error {
	switch {
	case c.Lineage.IsZero():
		return fmt.Errorf("the lineage is zero")
	case c.Snapshot == 0 || c.Record.Snapshot != c.Snapshot:
		return fmt.Errorf("snapshot %d with a record of snapshot %d", c.Snapshot, c.Record.Snapshot)
	case c.Prev >= c.Snapshot:
		return fmt.Errorf("snapshot %d follows snapshot %d", c.Snapshot, c.Prev)
	case c.Prev == 0 && c.PrevSum != 0:
		return fmt.Errorf("a checksum of no previous object")
	case c.Full() && c.Base != c.Snapshot:
		return fmt.Errorf("full snapshot %d with base %d", c.Snapshot, c.Base)
	case !c.Full() && (c.Prev == 0 || c.Base > c.Prev):
		return fmt.Errorf("delta snapshot %d on snapshot %d with base %d", c.Snapshot, c.Prev, c.Base)
	case len(c.Segments) > MaxCommitSegments:
		return fmt.Errorf("%d segments, more than %d", len(c.Segments), MaxCommitSegments)
	}
	listed := make(map[uint64]bool, len(c.Segments))
	for i, s := range c.Segments {
		if s.ID == 0 || s.Size < 0 || (i > 0 && s.ID <= c.Segments[i-1].ID) {
			return fmt.Errorf("segment list entry %d (segment %d of %d bytes) is zero, negative or out of order", i, s.ID, s.Size)
		}
		listed[s.ID] = true
	}
	for _, st := range c.Record.States {
		for _, l := range locs(&st) {
			if !listed[l.Segment] {
				return fmt.Errorf("state %q is in segment %d, which the segment list lacks", st.Name, l.Segment)
			}
		}
	}
	return nil
}

// locs returns every location a state uses.
func locs(s *manifest.State) []manifest.Loc {
	if s.Kind == manifest.ValueState {
		return []manifest.Loc{s.Value}
	}
	return append(slices.Clip(s.Base), s.Deltas...)
}

// Encode returns c's encoding, with the checksum that ends it.
func (c *Commit) Encode() ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("replica: commit object: %w", err)
	}
	b := fileheader.Append(nil, CommitMagic, FormatVersion, c.Snapshot)
	b = append(b, c.Lineage[:]...)
	b = le.AppendUint64(b, c.Prev)
	b = le.AppendUint64(b, c.PrevSum)
	b = le.AppendUint64(b, c.Base)
	b = le.AppendUint32(b, uint32(len(c.Segments)))
	lenAt := len(b)
	b = le.AppendUint32(b, 0) // the record's length, below
	for _, s := range c.Segments {
		b = le.AppendUint64(b, s.ID)
		b = le.AppendUint64(b, uint64(s.Size))
		b = le.AppendUint64(b, s.Tag)
		b = le.AppendUint64(b, 0)
	}
	start := len(b)
	b, err := c.Record.AppendPayload(b)
	if err != nil {
		return nil, fmt.Errorf("replica: commit object of snapshot %d: %w", c.Snapshot, err)
	}
	n := len(b) - start
	if n > manifest.MaxRecordSize {
		return nil, fmt.Errorf("replica: commit object of snapshot %d: a record of %d bytes, more than %d", c.Snapshot, n, manifest.MaxRecordSize)
	}
	le.PutUint32(b[lenAt:], uint32(n))
	return le.AppendUint64(b, xxhash.Sum64(b)), nil
}

// DecodeCommit decodes and checks a commit object; name says where it
// was read (a store and key) in errors. It returns the object and its
// checksum (its last 8 bytes), which the next object's PrevSum names.
// Every problem is an error wrapping ErrCorrupt naming name and the
// offset, or, for a newer format version, one wrapping
// ErrUnsupportedVersion. It never panics and allocates at most a small
// multiple of len(b).
func DecodeCommit(b []byte, name string) (*Commit, uint64, error) {
	if len(b) < fileheader.Size {
		return nil, 0, errs.Corruptf(name, int64(len(b)), "a commit object of %d bytes is shorter than its header", len(b))
	}
	id, _, err := fileheader.Parse(b[:fileheader.Size], name, "commit object", CommitMagic, FormatVersion)
	if err != nil {
		return nil, 0, err
	}
	if len(b) < commitFixed+sumSize {
		return nil, 0, errs.Corruptf(name, int64(len(b)), "a commit object of %d bytes is cut short", len(b))
	}
	end := len(b) - sumSize
	sum := le.Uint64(b[end:])
	if got := xxhash.Sum64(b[:end]); got != sum {
		return nil, 0, errs.CorruptCause(errs.ErrChecksum, name, int64(end), "checksum %016x, want %016x", got, sum)
	}
	c := &Commit{Snapshot: id}
	copy(c.Lineage[:], b[32:48])
	c.Prev, c.PrevSum, c.Base = le.Uint64(b[48:]), le.Uint64(b[56:]), le.Uint64(b[64:])
	nseg, nrec := uint64(le.Uint32(b[72:])), uint64(le.Uint32(b[76:]))
	// Both lengths are checked against the bytes there are before they
	// are used.
	if nseg > MaxCommitSegments || nrec == 0 || nrec > manifest.MaxRecordSize || commitFixed+segRefSize*nseg+nrec != uint64(end) {
		return nil, 0, errs.Corruptf(name, 72, "%d segments and a record of %d bytes do not fill the %d bytes of the object", nseg, nrec, len(b))
	}
	c.Segments = make([]SegmentRef, nseg)
	for i := range c.Segments {
		at := commitFixed + segRefSize*i
		e := b[at : at+segRefSize]
		size := le.Uint64(e[8:])
		if size > math.MaxInt64 || le.Uint64(e[24:]) != 0 {
			return nil, 0, errs.Corruptf(name, int64(at), "bad segment list entry %d", i)
		}
		c.Segments[i] = SegmentRef{ID: le.Uint64(e), Size: int64(size), Tag: le.Uint64(e[16:])}
	}
	recAt := commitFixed + segRefSize*int(nseg)
	if c.Record, err = manifest.DecodePayload(b[recAt:end], name, int64(recAt)); err != nil {
		return nil, 0, err
	}
	if err := c.validate(); err != nil {
		return nil, 0, errs.Corruptf(name, 32, "%v", err)
	}
	return c, sum, nil
}

// Owner is an owner record: who replicates to a location. The record
// with the highest sequence number is the owner; a DB restored from the
// owner's lineage takes over by creating the next one.
type Owner struct {
	Seq     uint64  // its sequence number, from 1, as in its key
	Lineage Lineage // the owner
	Parent  Lineage // the lineage the owner was restored from; zero if none
	Fork    uint64  // the parent's snapshot it was restored from; 0 if none
	Time    time.Time
}

// Encode returns o's encoding.
func (o *Owner) Encode() []byte {
	b := fileheader.Append(nil, OwnerMagic, FormatVersion, o.Seq)
	b = append(b, o.Lineage[:]...)
	b = append(b, o.Parent[:]...)
	b = le.AppendUint64(b, o.Fork)
	b = le.AppendUint64(b, uint64(o.Time.UnixNano()))
	return le.AppendUint64(b, xxhash.Sum64(b))
}

// DecodeOwner decodes and checks an owner record; name says where it was
// read in errors, which wrap ErrCorrupt or ErrUnsupportedVersion.
func DecodeOwner(b []byte, name string) (Owner, error) {
	var o Owner
	if len(b) < fileheader.Size {
		return o, errs.Corruptf(name, int64(len(b)), "an owner record of %d bytes is shorter than its header", len(b))
	}
	seq, _, err := fileheader.Parse(b[:fileheader.Size], name, "owner record", OwnerMagic, FormatVersion)
	if err != nil {
		return o, err
	}
	if len(b) != OwnerSize {
		return o, errs.Corruptf(name, int64(min(len(b), OwnerSize)), "an owner record of %d bytes, want %d", len(b), OwnerSize)
	}
	if got, want := xxhash.Sum64(b[:OwnerSize-sumSize]), le.Uint64(b[OwnerSize-sumSize:]); got != want {
		return o, errs.CorruptCause(errs.ErrChecksum, name, OwnerSize-sumSize, "checksum %016x, want %016x", got, want)
	}
	o.Seq = seq
	copy(o.Lineage[:], b[32:48])
	copy(o.Parent[:], b[48:64])
	o.Fork = le.Uint64(b[64:])
	o.Time = time.Unix(0, int64(le.Uint64(b[72:]))).UTC()
	switch {
	case seq == 0 || o.Lineage.IsZero() || o.Lineage == o.Parent:
		return o, errs.Corruptf(name, 16, "owner record %d of lineage %s (parent %s) is impossible", seq, o.Lineage, o.Parent)
	case o.Parent.IsZero() != (o.Fork == 0):
		return o, errs.Corruptf(name, 64, "owner record %d has a parent without a fork snapshot, or a fork without a parent", seq)
	}
	return o, nil
}
