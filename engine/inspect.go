package engine

import (
	"fmt"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

// Read APIs for tools (package inspect, instadump-inspect).

// Segment returns the reader of segment id, opening and checking its
// header, trailer and index if it is not open yet.
func (e *Engine) Segment(id uint64) (*segment.Reader, error) {
	r, err := e.reader(id)
	if err != nil {
		return nil, err
	}
	return r.Reader, nil
}

// SegmentFile is a segment file found in the directory.
type SegmentFile struct {
	ID   uint64
	Name string
	Size int64
}

// SegmentFiles lists the segment files in the directory, by ID.
func (e *Engine) SegmentFiles() ([]SegmentFile, error) {
	d, err := e.list()
	if err != nil {
		return nil, err
	}
	var out []SegmentFile
	for _, n := range d.names {
		id, ok := segment.ParseFileName(n)
		if !ok {
			continue
		}
		f, size, err := e.openSized(n)
		if err != nil {
			continue // deleted since the listing
		}
		f.Close()
		out = append(out, SegmentFile{ID: id, Name: n, Size: size})
	}
	return out, nil
}

// ReadManifest reads CURRENT anew and replays the manifest it names,
// keeping every snapshot it holds. It returns the manifest's path.
func (e *Engine) ReadManifest() (*manifest.Replayed, string, error) {
	cur, err := e.readFile(CurrentFile)
	if err != nil {
		return nil, "", fmt.Errorf("instadump: reading %s: %w", e.path(CurrentFile), err)
	}
	num, err := manifest.DecodeCurrent(cur, e.path(CurrentFile))
	if err != nil {
		return nil, "", err
	}
	name := manifest.FileName(num)
	f, size, err := e.openSized(name)
	if err != nil {
		return nil, "", errs.CorruptCause(ErrFileMissing, e.path(name), 0, "manifest %s named by CURRENT cannot be opened: %v", name, err)
	}
	defer f.Close()
	rep, err := manifest.Replay(f, size, e.path(name), 0)
	return rep, e.path(name), err
}

// CheckSnapshot checks that every state of s is where its segment's index
// says, and with deep reads and verifies every value. It returns every
// problem found, each naming its file and offset.
func (e *Engine) CheckSnapshot(s *manifest.Snapshot, deep bool) []error {
	var problems []error
	unreadable := map[uint64]bool{} // one problem per segment that does not open
	for _, name := range sortedStateNames(s.States) {
		ref := s.States[name]
		if unreadable[ref.Segment] {
			continue
		}
		r, err := e.reader(ref.Segment)
		if err != nil {
			unreadable[ref.Segment] = true
			problems = append(problems, err)
			continue
		}
		if got, ok := r.Find(name); !ok || got != ref.Entry {
			problems = append(problems, errs.Corruptf(r.File(), ref.Offset,
				"snapshot %d says state %q is at offset %d (%d bytes), but the segment's index does not agree", s.ID, name, ref.Offset, ref.StoredLen))
			continue
		}
		if deep {
			if _, err := r.Read(ref.Entry); err != nil {
				problems = append(problems, err)
			}
		}
	}
	return problems
}
