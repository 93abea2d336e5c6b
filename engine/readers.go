package engine

import (
	"fmt"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/segment"
)

// Readers: every segment in use is opened once, checked (header, trailer,
// index) and kept open. A reader is counted while in use: garbage
// collection deletes a segment's file at once, but closes it only when
// its last user is done, so a read that found a value in a snapshot
// finishes even if a commit drops that snapshot meanwhile.

type segReader struct {
	*segment.Reader
	f    File
	refs int  // users; guarded by e.mu
	dead bool // collected: close when refs drops to 0
}

// acquire returns the reader of segment id, opening it if needed; the
// caller must release it. Call with e.mu held.
func (e *Engine) acquire(id uint64) (*segReader, error) {
	if e.closed {
		return nil, errs.ErrClosed
	}
	r := e.readers[id]
	if r == nil {
		var err error
		if r, err = e.openSegment(id); err != nil {
			return nil, err
		}
		e.readers[id] = r
	}
	r.refs++
	return r, nil
}

// release ends a use of r. Call with e.mu held.
func (e *Engine) release(r *segReader) {
	r.refs--
	if r.dead && r.refs == 0 {
		r.f.Close()
		if e.readers[r.ID()] == r {
			delete(e.readers, r.ID())
		}
	}
}

// retire drops r from use: its file is closed once no one reads it.
// Call with e.mu held.
func (e *Engine) retire(r *segReader) {
	r.dead = true
	r.refs++
	e.release(r)
}

// openSegment opens and checks segment id.
func (e *Engine) openSegment(id uint64) (*segReader, error) {
	name := segment.FileName(id)
	f, size, err := e.openSized(name)
	if vfs.IsNotExist(err) {
		return nil, errs.Missing(e.path(name), "segment %s is missing, though a retained snapshot references it", name)
	}
	if vfs.IsNotRegular(err) {
		// Never opened for reading (a FIFO would block): damage to
		// this segment, as a missing one is.
		return nil, errs.Corruptf(e.path(name), 0, "segment %s is not a regular file (a FIFO, a directory or a device stands where the segment should be): %v", name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("instadump: opening segment %s: %w", e.path(name), err)
	}
	r, err := segment.Open(f, size, e.path(name))
	if err == nil && r.ID() != id {
		err = errs.Corruptf(e.path(name), 16, "segment file holds segment ID %d", r.ID())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &segReader{Reader: r, f: f}, nil
}

// openSized opens file name of the directory read-only, with its size.
func (e *Engine) openSized(name string) (File, int64, error) {
	f, err := e.fs.Open(e.path(name))
	if err != nil {
		return nil, 0, err
	}
	size, err := f.Size()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, size, nil
}

// Read returns the verified raw bytes of the value l locates.
func (e *Engine) Read(l Loc) ([]byte, error) {
	if e.ra != nil {
		if raw := e.ra.claim(l); raw != nil {
			return raw, nil
		}
	}
	return e.readDirect(l)
}

// readDirect reads l from its segment.
func (e *Engine) readDirect(l Loc) ([]byte, error) {
	e.mu.Lock()
	r, err := e.acquire(l.Segment)
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	defer func() {
		e.mu.Lock()
		e.release(r)
		e.mu.Unlock()
	}()
	return r.Read(segment.Entry{Name: l.Name, Offset: l.Offset, StoredLen: l.StoredLen, RawLen: l.RawLen, StoredSum: l.StoredSum, RawSum: l.RawSum})
}

// Hold returns where the states names live in retained snapshot id (0:
// the current one), with a Ref of Kind 0 for a state the snapshot lacks,
// and holds their segments open: Read of their values works, whatever
// commits do meanwhile, until release is called. ok is false, and nothing
// held, when the snapshot is not retained.
func (e *Engine) Hold(id uint64, names []string) (refs []Ref, release func(), ok bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	i := e.index(id)
	if i < 0 {
		return nil, nil, false, nil
	}
	var held []*segReader
	release = func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, r := range held {
			e.release(r)
		}
		held = nil
	}
	refs = make([]Ref, len(names))
	seen := map[uint64]bool{}
	for k, name := range names {
		r, found := e.lookupAt(i, name)
		if !found {
			continue
		}
		refs[k] = r
		locs(&r, func(l *Loc) {
			if err != nil || seen[l.Segment] {
				return
			}
			seen[l.Segment] = true
			var sr *segReader
			if sr, err = e.acquire(l.Segment); err == nil {
				held = append(held, sr)
			}
		})
	}
	if err != nil {
		for _, r := range held {
			e.release(r)
		}
		return nil, nil, true, err
	}
	return refs, release, true, nil
}

// FileOf returns the path of the segment file that holds l, for errors.
func (e *Engine) FileOf(l Loc) string { return e.path(segment.FileName(l.Segment)) }
