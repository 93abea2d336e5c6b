package replica

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// The keys of a replicated DB in a Store (the package doc has the layout).
// These are part of the format and must not change.
const (
	// OwnerPrefix begins the keys of owner records: "owner/" and the
	// record's sequence number in 20 digits.
	OwnerPrefix = "owner/"
	// snapDir and segDir are the folders under a lineage's prefix.
	snapDir = "/snap/"
	segDir  = "/seg/"
	// seqDigits is the width of the zero-padded numbers in owner and
	// commit object keys, so that keys sort as their numbers do.
	seqDigits = 20
)

// Lineage identifies one history of a DB's snapshots: 16 random bytes,
// made when a DB first replicates and when one is restored. A DB that
// continues a history keeps its lineage; a restored one starts its own.
type Lineage [16]byte

// NewLineage returns a random lineage.
func NewLineage() (Lineage, error) {
	var l Lineage
	if _, err := rand.Read(l[:]); err != nil {
		return l, fmt.Errorf("replica: making a lineage ID: %w", err)
	}
	return l, nil
}

// String returns l as 32 lowercase hex digits.
func (l Lineage) String() string { return hex.EncodeToString(l[:]) }

// IsZero says whether l is the zero lineage, which means "none".
func (l Lineage) IsZero() bool { return l == Lineage{} }

// ParseLineage parses 32 lowercase hex digits.
func ParseLineage(s string) (Lineage, error) {
	var l Lineage
	if len(s) != 2*len(l) || strings.ToLower(s) != s {
		return l, fmt.Errorf("replica: lineage %q is not 32 lowercase hex digits", s)
	}
	if _, err := hex.Decode(l[:], []byte(s)); err != nil {
		return l, fmt.Errorf("replica: lineage %q is not 32 lowercase hex digits", s)
	}
	return l, nil
}

// SegmentRef names one segment file as a commit object lists it: its ID
// (the NNNNNN of NNNNNN.seg), its size, and its tag: the checksum its
// trailer holds (trailer bytes 32..40), which covers its index and so
// the checksum of every value in it. Two segments with the same ID and
// tag hold the same bytes.
type SegmentRef struct {
	ID   uint64
	Size int64
	Tag  uint64
}

// OwnerKey returns the key of owner record seq.
func OwnerKey(seq uint64) string { return OwnerPrefix + pad(seq) }

// ParseOwnerKey returns the sequence number of an owner record's key.
func ParseOwnerKey(key string) (uint64, bool) {
	rest, ok := strings.CutPrefix(key, OwnerPrefix)
	if !ok {
		return 0, false
	}
	return unpad(rest)
}

// LineagePrefix returns the prefix of every object of lineage l.
func LineagePrefix(l Lineage) string { return l.String() + "/" }

// SegmentPrefix returns the prefix of the segments of lineage l.
func SegmentPrefix(l Lineage) string { return l.String() + segDir }

// CommitPrefix returns the prefix of the commit objects of lineage l.
func CommitPrefix(l Lineage) string { return l.String() + snapDir }

// CommitKey returns the key of the commit object of snapshot id in
// lineage l.
func CommitKey(l Lineage, id uint64) string { return l.String() + snapDir + pad(id) }

// SegmentKey returns the key of segment s in lineage l:
// "<lineage>/seg/NNNNNN-<tag as 16 hex digits>.seg".
func SegmentKey(l Lineage, s SegmentRef) string {
	return fmt.Sprintf("%s%s%06d-%016x.seg", l, segDir, s.ID, s.Tag)
}

// ParseKey says what key is in a replicated DB's layout: an owner record
// (lineage zero, kind "owner"), a commit object ("snap") or a segment
// ("seg"), with its number: the owner record's sequence number, the
// snapshot's ID, or the segment's ID (with its tag in ref). Any other
// key is not part of the layout (ok false).
func ParseKey(key string) (kind string, l Lineage, num uint64, ref SegmentRef, ok bool) {
	if seq, ok := ParseOwnerKey(key); ok {
		return "owner", l, seq, ref, true
	}
	ls, rest, found := strings.Cut(key, "/")
	if !found {
		return "", l, 0, ref, false
	}
	l, err := ParseLineage(ls)
	if err != nil {
		return "", l, 0, ref, false
	}
	rest = "/" + rest
	if s, ok := strings.CutPrefix(rest, snapDir); ok {
		if id, ok := unpad(s); ok && id > 0 {
			return "snap", l, id, ref, true
		}
		return "", l, 0, ref, false
	}
	if s, ok := strings.CutPrefix(rest, segDir); ok {
		if s, ok = strings.CutSuffix(s, ".seg"); !ok {
			return "", l, 0, ref, false
		}
		ids, tags, found := strings.Cut(s, "-")
		if !found || len(ids) < 6 || len(tags) != 16 || strings.TrimLeft(ids, "0123456789") != "" || strings.ToLower(tags) != tags {
			return "", l, 0, ref, false
		}
		id, err1 := strconv.ParseUint(ids, 10, 64)
		tag, err2 := strconv.ParseUint(tags, 16, 64)
		if err1 != nil || err2 != nil || id == 0 || fmt.Sprintf("%06d", id) != ids {
			return "", l, 0, ref, false
		}
		return "seg", l, id, SegmentRef{ID: id, Tag: tag}, true
	}
	return "", l, 0, ref, false
}

func pad(n uint64) string { return fmt.Sprintf("%0*d", seqDigits, n) }

func unpad(s string) (uint64, bool) {
	if len(s) != seqDigits || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}
