package engine

import (
	"slices"

	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

// What tools (package inspect, instadump-inspect) read of an engine
// opened read-only: the manifest as recovery replayed it, the segment
// files, and a full verification. A read-only engine holds every segment
// open from the start, so it reads consistently beside an owner that
// saves and deletes files meanwhile.

// Manifest returns the manifest recovery replayed and its path, for an
// engine opened read-only (nil for one opened read-write, which has
// already started a new manifest).
func (e *Engine) Manifest() (*manifest.Log, string) {
	if e.records == nil {
		return nil, ""
	}
	return e.records, e.path(manifest.FileName(e.records.FileNum))
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
	for _, id := range d.segs {
		f, size, err := e.openSized(segment.FileName(id))
		if err != nil {
			continue // deleted since the listing, or not a regular file
		}
		f.Close()
		out = append(out, SegmentFile{ID: id, Name: segment.FileName(id), Size: size})
	}
	return out, nil
}

// Segment returns the reader of segment id, opening and checking its
// header, trailer and index if it is not open yet; call release when done
// with it.
func (e *Engine) Segment(id uint64) (r *segment.Reader, release func(), err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	sr, err := e.acquire(id)
	if err != nil {
		return nil, nil, err
	}
	return sr.Reader, func() { e.mu.Lock(); e.release(sr); e.mu.Unlock() }, nil
}

// Verify checks every retained snapshot against its segments and every
// byte of every segment they use. It returns every problem found, each
// naming its file and offset (none: intact), the first of them a damaged
// last manifest record recovery found (Report.DamagedTail). progress, if
// not nil, is called as segment bytes are checked.
func (e *Engine) Verify(progress func(done, total int64)) []error {
	e.mu.Lock()
	n := len(e.snaps)
	e.mu.Unlock()
	var problems []error
	if e.report.DamagedTail != nil {
		problems = append(problems, e.report.DamagedTail)
	}
	seen := map[string]bool{} // a damaged segment older snapshots share is one problem
	for i := range n {
		for _, p := range e.check(i, false) {
			if !seen[p.Error()] {
				seen[p.Error()] = true
				problems = append(problems, p)
			}
		}
	}
	var ids []uint64
	var total, done int64
	e.mu.Lock()
	for id := range e.live.bySeg {
		if r := e.readers[id]; r != nil {
			ids = append(ids, id)
			total += r.Size()
		}
	}
	e.mu.Unlock()
	slices.Sort(ids)
	for _, id := range ids {
		r, release, err := e.Segment(id)
		if err != nil {
			continue // check reported it
		}
		for _, en := range r.Entries() {
			if err := r.Check(en); err != nil {
				if !seen[err.Error()] {
					problems = append(problems, err)
				}
				break // one problem a segment: say where first
			}
			done += en.StoredLen
			if progress != nil {
				progress(done, total)
			}
		}
		done += r.Size() - sumStored(r.Entries())
		release()
		if progress != nil {
			progress(done, total)
		}
	}
	return problems
}

func sumStored(es []segment.Entry) int64 {
	var n int64
	for _, en := range es {
		n += en.StoredLen
	}
	return n
}
