package engine

import (
	"fmt"
	"path/filepath"
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
// and the snapshot it was restored from. A DB that never replicates has
// none. Like CURRENT it is a small text file, replaced by rename, never
// edited:
//
//	instadump LINEAGE 1\n
//	id 0123456789abcdef0123456789abcdef\n
//	parent fedcba9876543210fedcba9876543210 17\n   ("parent none\n" if not restored)
//	xxh64 0123456789abcdef\n                        xxhash64 of the lines above

// LineageFile is the name of the file holding a DB's lineage.
const LineageFile = "LINEAGE"

const (
	lineageTmp     = LineageFile + ".tmp"
	lineageMagic   = "instadump LINEAGE"
	lineageVersion = 1
	maxLineageSize = 256
)

// Lineage says which history of snapshots a DB continues.
type Lineage struct {
	ID     replica.Lineage
	Parent replica.Lineage // the lineage it was restored from; zero if none
	Fork   uint64          // the parent's snapshot it was restored from; 0 if none
}

func encodeLineage(l Lineage) []byte {
	parent := "none"
	if !l.Parent.IsZero() {
		parent = fmt.Sprintf("%s %d", l.Parent, l.Fork)
	}
	body := fmt.Sprintf("%s %d\nid %s\nparent %s\n", lineageMagic, lineageVersion, l.ID, parent)
	return fmt.Appendf(nil, "%sxxh64 %016x\n", body, xxhash.Sum64String(body))
}

func decodeLineage(data []byte, file string) (Lineage, error) {
	var l Lineage
	if len(data) > maxLineageSize {
		return l, errs.Corruptf(file, maxLineageSize, "%s is %d bytes, more than %d", LineageFile, len(data), maxLineageSize)
	}
	lines := strings.SplitAfter(string(data), "\n")
	if len(lines) != 5 || lines[4] != "" {
		return l, errs.Corruptf(file, 0, "%s does not have exactly four lines", LineageFile)
	}
	head := strings.TrimSuffix(lines[0], "\n")
	if !strings.HasPrefix(head, lineageMagic+" ") {
		return l, errs.CorruptCause(errs.ErrBadMagic, file, 0, "not a %s file: first line %q", LineageFile, head)
	}
	body := lines[0] + lines[1] + lines[2]
	hex, ok := strings.CutPrefix(strings.TrimSuffix(lines[3], "\n"), "xxh64 ")
	want, err := strconv.ParseUint(hex, 16, 64)
	if !ok || len(hex) != 16 || err != nil {
		return l, errs.Corruptf(file, int64(len(body)), "bad checksum line %q", lines[3])
	}
	if got := xxhash.Sum64String(body); got != want {
		return l, errs.CorruptCause(errs.ErrChecksum, file, int64(len(body)), "checksum %016x, want %016x", got, want)
	}
	if v := strings.TrimPrefix(head, lineageMagic+" "); v != strconv.Itoa(lineageVersion) {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil || n == 0 {
			return l, errs.Corruptf(file, int64(len(lineageMagic)+1), "bad version in %q", head)
		}
		return l, &errs.VersionError{File: file, Offset: int64(len(lineageMagic) + 1), What: "LINEAGE format version", Got: n, Max: lineageVersion}
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
	if string(encodeLineage(l)) != string(data) {
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
