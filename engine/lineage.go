package engine

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/replica"
)

// The LINEAGE file: which history of snapshots a DB directory continues,
// for replication (see ship.go). A DB that replicates writes it when it
// first does; Restore writes one with a new lineage, naming the lineage
// that owned the location then and the snapshot it was restored from. A
// DB that never replicates has none. Like CURRENT it is a small text
// file, replaced by rename, never edited:
//
//	instadump LINEAGE 4\n
//	id 0123456789abcdef0123456789abcdef\n
//	parent fedcba9876543210fedcba9876543210 17\n   the lineage it takes over from, and the fork
//	                                                ("parent none\n" if none)
//	shipped 42 0123456789abcdef 41 fedcba9876543210\n
//	                                                the snapshot it may have shipped last, and the one
//	                                                shipped before it, each with its commit object's
//	                                                checksum; 0 and 0: none
//	via 00112233445566778899aabbccddeeff\n          ("via none\n" if none) up to 3 lineages
//	                                                this directory continued before, which
//	                                                may own the location too (Lineage.Via)
//	xxh64 0123456789abcdef\n                        xxhash64 of the lines above
//
// Version 1 has no shipped line: what it shipped is not known. Version 2
// has "shipped 42" alone: the snapshots, not their checksums. Versions 1
// to 3 have no via line.

// LineageFile is the name of the file holding a DB's lineage.
const LineageFile = "LINEAGE"

const (
	lineageTmp     = LineageFile + ".tmp"
	lineageMagic   = "instadump LINEAGE"
	lineageVersion = 4
	maxLineageSize = 512
	maxVia         = 3
)

// Lineage says which history of snapshots a DB continues.
type Lineage struct {
	ID replica.Lineage
	// Parent is the lineage it takes the location over from: for a
	// restored DB, the location's owner when it was restored (whose
	// timeline holds the snapshot restored, perhaps of a lineage before
	// it); zero if none. Fork is the snapshot it continues from; 0 if
	// none.
	Parent replica.Lineage
	Fork   uint64
	// Shipped is the newest snapshot of the lineage this directory may
	// have shipped, noted before it ships it (noteShipped): a store whose
	// newest snapshot is newer, and not one the directory retains to
	// compare, was shipped to by a copy of it (shipper.start).
	Shipped uint64
	// ShippedKnown says Shipped is known: false for a LINEAGE file of
	// format 1, which did not note it. A LINEAGE written is of format 4.
	ShippedKnown bool
	// ShippedSum is the checksum of Shipped's commit object; Prev and
	// PrevSum the snapshot shipped before it (the last known to be in
	// the store then) and its checksum: the store's newest snapshot, if
	// this directory shipped it, is one of the two. SumsKnown is false
	// for a LINEAGE of format 1 or 2.
	ShippedSum, Prev, PrevSum uint64
	SumsKnown                 bool
	// Via are lineages this directory continued before, newest first
	// (zero when fewer), that it may take the location over from as from
	// Parent: it fell back to a snapshot older than where each began,
	// which is on the timeline of whichever of them owns the location,
	// if one does (it may have taken the location over, or not yet). The
	// oldest is forgotten when a fourth comes.
	Via [maxVia]replica.Lineage
}

// continued returns the Via of a lineage that continues l from a
// snapshot older than where l began: l, then l's own Via.
func (l Lineage) continued() (via [maxVia]replica.Lineage) {
	via[0] = l.ID
	copy(via[1:], l.Via[:])
	return via
}

// mayTakeOver says whether the lineage may take the location over from
// owner o: o is its parent, or one of its Via.
func (l Lineage) mayTakeOver(o replica.Lineage) bool {
	return !o.IsZero() && (o == l.Parent || slices.Contains(l.Via[:], o))
}

func encodeLineage(l Lineage) []byte { return encodeLineageVersion(l, lineageVersion) }

func encodeLineageVersion(l Lineage, version int) []byte {
	parent := "none"
	if !l.Parent.IsZero() {
		parent = fmt.Sprintf("%s %d", l.Parent, l.Fork)
	}
	body := fmt.Sprintf("%s %d\nid %s\nparent %s\n", lineageMagic, version, l.ID, parent)
	switch {
	case version >= 3:
		body += fmt.Sprintf("shipped %d %016x %d %016x\n", l.Shipped, l.ShippedSum, l.Prev, l.PrevSum)
	case version == 2:
		body += fmt.Sprintf("shipped %d\n", l.Shipped)
	}
	if version >= 4 {
		via := "via"
		for _, v := range l.Via {
			if !v.IsZero() {
				via += " " + v.String()
			}
		}
		if via == "via" {
			via += " none"
		}
		body += via + "\n"
	}
	return fmt.Appendf(nil, "%sxxh64 %016x\n", body, xxhash.Sum64String(body))
}

func decodeLineage(data []byte, file string) (Lineage, error) {
	var l Lineage
	if len(data) > maxLineageSize {
		return l, errs.Corruptf(file, maxLineageSize, "%s is %d bytes, more than %d", LineageFile, len(data), maxLineageSize)
	}
	lines := strings.SplitAfter(string(data), "\n")
	head := strings.TrimSuffix(lines[0], "\n")
	if !strings.HasPrefix(head, lineageMagic+" ") {
		return l, errs.CorruptCause(errs.ErrBadMagic, file, 0, "not a %s file: first line %q", LineageFile, head)
	}
	v := strings.TrimPrefix(head, lineageMagic+" ")
	version, err := strconv.Atoi(v)
	switch {
	case err != nil || version <= 0 || strconv.Itoa(version) != v:
		return l, errs.Corruptf(file, int64(len(lineageMagic)+1), "bad version in %q", head)
	case version > lineageVersion:
		return l, &errs.VersionError{File: file, Offset: int64(len(lineageMagic) + 1), What: "LINEAGE format version", Got: uint64(version), Max: lineageVersion}
	}
	want := 5 // lines (version 1 has no shipped line, version 4 adds via)
	switch version {
	case 1:
		want = 4
	case 4:
		want = 6
	}
	if len(lines) != want+1 || lines[want] != "" {
		return l, errs.Corruptf(file, 0, "%s does not have exactly %d lines", LineageFile, want)
	}
	sumLine := want - 1
	body := strings.Join(lines[:sumLine], "")
	hex, ok := strings.CutPrefix(strings.TrimSuffix(lines[sumLine], "\n"), "xxh64 ")
	sum, err := strconv.ParseUint(hex, 16, 64)
	if !ok || len(hex) != 16 || err != nil {
		return l, errs.Corruptf(file, int64(len(body)), "bad checksum line %q", lines[sumLine])
	}
	if got := xxhash.Sum64String(body); got != sum {
		return l, errs.CorruptCause(errs.ErrChecksum, file, int64(len(body)), "checksum %016x, want %016x", got, sum)
	}
	bad := func(line int) (Lineage, error) {
		return Lineage{}, errs.Corruptf(file, int64(len(strings.Join(lines[:line], ""))), "bad line %q", strings.TrimSuffix(lines[line], "\n"))
	}
	id, ok := strings.CutPrefix(strings.TrimSuffix(lines[1], "\n"), "id ")
	if l.ID, err = replica.ParseLineage(id); !ok || err != nil || l.ID.IsZero() {
		return bad(1)
	}
	parent, ok := strings.CutPrefix(strings.TrimSuffix(lines[2], "\n"), "parent ")
	if !ok {
		return bad(2)
	}
	if parent != "none" {
		p, fork, _ := strings.Cut(parent, " ")
		if l.Parent, err = replica.ParseLineage(p); err != nil || l.Parent.IsZero() || l.Parent == l.ID {
			return bad(2)
		}
		if l.Fork, err = strconv.ParseUint(fork, 10, 64); err != nil || l.Fork == 0 {
			return bad(2)
		}
	}
	if version >= 2 {
		shipped, ok := strings.CutPrefix(strings.TrimSuffix(lines[3], "\n"), "shipped ")
		f := strings.Split(shipped, " ")
		if !ok || version == 2 && len(f) != 1 || version >= 3 && len(f) != 4 {
			return bad(3)
		}
		if l.Shipped, err = strconv.ParseUint(f[0], 10, 64); err != nil {
			return bad(3)
		}
		if version >= 3 {
			var e1, e2, e3 error
			l.ShippedSum, e1 = strconv.ParseUint(f[1], 16, 64)
			l.Prev, e2 = strconv.ParseUint(f[2], 10, 64)
			l.PrevSum, e3 = strconv.ParseUint(f[3], 16, 64)
			if e1 != nil || e2 != nil || e3 != nil {
				return bad(3)
			}
			l.SumsKnown = true
		}
		l.ShippedKnown = true
	}
	if version >= 4 {
		via, ok := strings.CutPrefix(strings.TrimSuffix(lines[4], "\n"), "via ")
		f := strings.Split(via, " ")
		if !ok || len(f) > maxVia {
			return bad(4)
		}
		if via != "none" {
			for i, v := range f {
				if l.Via[i], err = replica.ParseLineage(v); err != nil || l.Via[i].IsZero() || l.Via[i] == l.ID || slices.Contains(l.Via[:i], l.Via[i]) {
					return bad(4)
				}
			}
		}
	}
	if string(encodeLineageVersion(l, version)) != string(data) {
		return l, errs.Corruptf(file, 0, "%s is not in its canonical form", LineageFile)
	}
	return l, nil
}

// readLineage reads the LINEAGE file of dir; false if there is none.
func readLineage(fsys FS, dir string) (Lineage, bool, error) {
	path := filepath.Join(dir, LineageFile)
	f, err := fsys.Open(path)
	if vfs.IsNotExist(err) {
		return Lineage{}, false, nil
	}
	if err != nil {
		return Lineage{}, false, fmt.Errorf("instadump: reading %s: %w", path, err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return Lineage{}, false, fmt.Errorf("instadump: reading %s: %w", path, err)
	}
	data, err := vfs.ReadAll(f, min(size, maxLineageSize+1))
	if err != nil {
		return Lineage{}, false, fmt.Errorf("instadump: reading %s: %w", path, err)
	}
	l, err := decodeLineage(data, path)
	return l, err == nil, err
}

// writeLineage replaces the LINEAGE file of dir durably: a temporary
// file, synced, renamed over it, and the directory synced.
func writeLineage(fsys FS, dir string, l Lineage) error {
	tmp, path := filepath.Join(dir, lineageTmp), filepath.Join(dir, LineageFile)
	f, err := fsys.Create(tmp)
	if err != nil {
		return fmt.Errorf("instadump: creating %s: %w", tmp, err)
	}
	_, err = f.Write(encodeLineage(l))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err == nil {
		err = fsys.SyncDir(dir)
	}
	if err != nil {
		fsys.Remove(tmp)
		return fmt.Errorf("instadump: writing %s: %w", path, err)
	}
	return nil
}
