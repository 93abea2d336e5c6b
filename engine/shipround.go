package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/replica"
	"github.com/instadump/instadump/segment"
)

func (s *shipper) round() error {
	ctx := s.ctx
	if !s.started {
		if err := s.start(ctx); err != nil {
			return err
		}
		s.started = true
	}
	if err := s.recheck(ctx); err != nil {
		return err
	}
	if !s.upToDate() {
		if err := s.checkOwner(ctx); err != nil {
			return err
		}
		cur, _ := s.e.Current()
		if err := s.ship(ctx, cur.ID); err != nil {
			return err
		}
	}
	if s.tidy {
		if err := s.retain(ctx); err != nil {
			return err
		}
		s.tidy = false
	}
	return nil
}

// recheck finds out, after a failed round, what the failure may have
// stored after all: segments whose upload's answer was lost (one List),
// and the commit object whose Create failed (one Get).
func (s *shipper) recheck(ctx context.Context) error {
	ours := s.loc.lineages[s.lin.ID]
	if s.relist {
		objs, err := list(ctx, s.st, replica.SegmentPrefix(s.lin.ID))
		if err != nil {
			return fmt.Errorf("instadump: listing the segments of lineage %s%s: %w", s.lin.ID, inStore(s.st, err), err)
		}
		for _, o := range objs {
			if kind, l, id, _, ok := replica.ParseKey(o.Key); ok && kind == "seg" && l == s.lin.ID {
				ours.segs[o.Key] = o.Size
				s.mu.Lock()
				s.present[id] = true
				s.mu.Unlock()
			}
		}
		s.relist = false
	}
	if p := s.pending; p != nil {
		theirs, err := s.readBack(ctx, p.key, len(p.b))
		switch {
		case errors.Is(err, replica.ErrNotFound):
			s.tried[p.key] = binary.LittleEndian.Uint64(p.b[len(p.b)-8:])
		case err != nil:
			return fmt.Errorf("instadump: reading back %s: %w", where(s.st, p.key), err)
		case !bytes.Equal(theirs, p.b):
			if _, ok := s.tried[p.key]; ok {
				// Perhaps an earlier Create of it, landed late.
				ok, err := s.findLate(ctx, p.key)
				if err != nil || ok {
					s.pending = nil
					return err
				}
			}
			return s.fenced("another process shipped snapshot %d of this DB's lineage %s first: a copy of this DB's directory replicates here too", p.c.Snapshot, s.lin.ID)
		default:
			s.pending = nil
			return s.confirm(ctx, p)
		}
		s.pending = nil
	}
	return nil
}

// confirm makes sure commit object p, just created (or found to be
// there), went in alone: the List after it finds no commit object of
// another process. A copy of this directory that listed before p was
// created, and created its own after, finds p in its List after: of two
// such Creates, at least one is seen. Seeing one, it deletes p again
// (the other's snapshots go on alone, or neither's) and is fenced.
func (s *shipper) confirm(ctx context.Context, p *pendingCommit) error {
	if err := s.onlyShipper(ctx, p.key); err != nil {
		if !errors.Is(err, ErrFenced) {
			s.pending = p // the next round looks again
			return err
		}
		if derr := s.st.Delete(ctx, p.key); derr != nil {
			return fmt.Errorf("%w; its own snapshot %d, created at the same time, is still in the store: delete %s (%v)", err, p.c.Snapshot, where(s.st, p.key), derr)
		}
		return fmt.Errorf("%w; its own snapshot %d, created at the same time, was deleted again", err, p.c.Snapshot)
	}
	s.committed(p)
	return nil
}

// committed records that commit object p is in the store.
func (s *shipper) committed(p *pendingCommit) {
	p.next.sum = binary.LittleEndian.Uint64(p.b[len(p.b)-8:])
	s.loc.lineages[s.lin.ID].commits[p.c.Snapshot] = &commitObj{key: p.key, size: int64(len(p.b)), c: p.c, sum: p.next.sum}
	s.shipped(p.next)
	s.tidy = true
}

// ship uploads snapshot id: the segments the store lacks, then its
// commit object.
func (s *shipper) ship(ctx context.Context, id uint64) error {
	h, ok, err := s.e.holdSnapshot(id, s.tags)
	if err != nil {
		return err
	}
	if !ok {
		return nil // dropped by retention meanwhile: the next round ships the newest
	}
	defer h.release()
	ours := s.loc.lineages[s.lin.ID]
	for _, sg := range h.segs {
		key := replica.SegmentKey(s.lin.ID, sg.ref)
		if size, ok := ours.segs[key]; ok && size == sg.ref.Size {
			continue
		}
		if err := s.st.Put(ctx, key, io.NewSectionReader(sg.f, 0, sg.ref.Size), sg.ref.Size); err != nil {
			return fmt.Errorf("instadump: uploading segment %s of snapshot %d: %w", segment.FileName(sg.ref.ID), id, err)
		}
		ours.segs[key] = sg.ref.Size
		s.mu.Lock()
		s.present[sg.ref.ID] = true
		s.mu.Unlock()
	}
	c, next, err := s.commitObject(h)
	if err != nil {
		return err
	}
	b, err := c.Encode()
	if err != nil {
		return fmt.Errorf("instadump: encoding the commit object of snapshot %d: %w", id, err)
	}
	p := &pendingCommit{key: replica.CommitKey(s.lin.ID, id), b: b, c: c, next: next}
	if _, ok := s.tried[p.key]; ok {
		// An earlier Create of it failed: it may have landed since.
		if ok, err := s.findLate(ctx, p.key); err != nil || ok {
			return err
		}
	}
	if err := s.noteShipped(id, binary.LittleEndian.Uint64(b[len(b)-8:])); err != nil {
		return err
	}
	// Listed right before the Create, and again right after (confirm).
	if err := s.onlyShipper(ctx, ""); err != nil {
		return err
	}
	if co := ours.commits[id]; co != nil && co.c != nil {
		return s.landed(co) // the earlier Create, landed as it listed
	}
	err = s.st.Create(ctx, p.key, bytes.NewReader(b), int64(len(b)))
	if errors.Is(err, replica.ErrExists) {
		// Ours, from an attempt whose answer was lost, or another copy
		// of this directory's.
		s.pending = p
		if err := s.recheck(ctx); err != nil {
			return err
		}
		if s.last == nil || s.last.id != id {
			return fmt.Errorf("instadump: committing snapshot %d to the store: its commit object was there, then gone: %w", id, replica.ErrUnavailable)
		}
		return nil
	}
	if err != nil {
		s.pending = p // it may be there all the same: the next round looks
		return fmt.Errorf("instadump: committing snapshot %d to the store: %w", id, err)
	}
	return s.confirm(ctx, p)
}

// onlyShipper makes sure, around the Create of a commit object, that the
// store holds no commit object of this lineage but those this process
// found at start, shipped, and mine (the one it creates, if any): a copy
// of this DB's directory that ships other snapshot IDs is seen by no
// Create of one ID. One List of the lineage's commit objects (and a Get
// of one whose Create failed here and which landed since, tried).
func (s *shipper) onlyShipper(ctx context.Context, mine string) error {
	objs, err := list(ctx, s.st, replica.CommitPrefix(s.lin.ID))
	if err != nil {
		return fmt.Errorf("instadump: listing the commit objects of lineage %s%s: %w", s.lin.ID, inStore(s.st, err), err)
	}
	ours := s.loc.lineages[s.lin.ID]
	for _, o := range objs {
		kind, l, id, _, ok := replica.ParseKey(o.Key)
		if !ok || kind != "snap" || l != s.lin.ID || o.Key == mine || ours.commits[id] != nil {
			continue
		}
		if _, ok := s.tried[o.Key]; ok {
			if _, err := s.late(ctx, o.Key); err != nil {
				return err
			}
			if ours.commits[id] != nil {
				continue
			}
		}
		return s.fenced("it holds snapshot %d of this DB's lineage %s, which this process did not ship: a copy of this DB's directory replicates here too", id, s.lin.ID)
	}
	return nil
}

// late reads commit object key, one whose Create failed here (tried),
// and returns it if it is that Create's, landed late: it joins the
// lineage's commit objects, which retention sees. Nil if it is not (or
// not there).
func (s *shipper) late(ctx context.Context, key string) (*commitObj, error) {
	b, err := s.readBack(ctx, key, replica.MaxCommitSize)
	if errors.Is(err, replica.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("instadump: reading %s: %w", where(s.st, key), err)
	}
	c, sum, err := replica.DecodeCommit(b, where(s.st, key))
	if err != nil || sum != s.tried[key] || c.Lineage != s.lin.ID || replica.CommitKey(c.Lineage, c.Snapshot) != key {
		return nil, nil
	}
	co := &commitObj{key: key, size: int64(len(b)), c: c, sum: sum}
	s.loc.lineages[s.lin.ID].commits[c.Snapshot] = co
	delete(s.tried, key)
	s.tidy = true
	return co, nil
}

// findLate looks for an earlier Create of commit object key that failed
// here and landed late (late). True if it landed.
func (s *shipper) findLate(ctx context.Context, key string) (bool, error) {
	co, err := s.late(ctx, key)
	if err != nil || co == nil {
		return false, err
	}
	return true, s.landed(co)
}

// landed takes commit object co, which landed late, as shipped if it is
// newer than the last this process knows of, noting it in LINEAGE.
func (s *shipper) landed(co *commitObj) error {
	if s.last != nil && co.c.Snapshot <= s.last.id {
		return nil
	}
	if err := s.noteShipped(co.c.Snapshot, co.sum); err != nil {
		return err
	}
	s.shipped(&lastShipped{id: co.c.Snapshot, sum: co.sum, base: co.c.Base, time: co.c.Record.Time})
	return nil
}

// readBack reads the object key, expecting want bytes (it reads at most
// one more, so that a longer object differs).
func (s *shipper) readBack(ctx context.Context, key string, want int) ([]byte, error) {
	var b []byte
	err := withRetry(ctx, func() error {
		rc, err := s.st.Get(ctx, key)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err = io.ReadAll(io.LimitReader(rc, int64(want)+1))
		return err
	})
	return b, err
}

// commitObject returns the commit object of held snapshot h (a delta on
// the last shipped one, when that is known and a delta is due) and what
// will be known of it once shipped.
func (s *shipper) commitObject(h *heldSnapshot) (*replica.Commit, *lastShipped, error) {
	c := &replica.Commit{Lineage: s.lin.ID, Snapshot: h.snap.ID, Segments: make([]replica.SegmentRef, len(h.segs))}
	for i, sg := range h.segs {
		c.Segments[i] = sg.ref
	}
	next := &lastShipped{id: h.snap.ID, time: h.snap.Time, states: h.states}
	if last := s.last; last != nil {
		c.Prev, c.PrevSum = last.id, last.sum
		if last.states != nil && last.deltas+1 < fullEvery {
			changed, removed := diff(last.states, h.states)
			c.Base = last.base
			c.Record = manifest.Record{Kind: manifest.Delta, Snapshot: h.snap.ID, Time: h.snap.Time, NextSegment: h.nextSeg,
				Written: h.snap.Written, States: changed, Removed: removed}
			b, err := c.Encode()
			if err != nil {
				return nil, nil, fmt.Errorf("instadump: encoding the commit object of snapshot %d: %w", h.snap.ID, err)
			}
			if last.deltaBytes+len(b) <= last.baseBytes {
				next.base, next.deltas, next.deltaBytes, next.baseBytes = last.base, last.deltas+1, last.deltaBytes+len(b), last.baseBytes
				return c, next, nil
			}
		}
	}
	c.Base = h.snap.ID
	c.Record = fullRecord(h.snap, h.nextSeg, h.states)
	b, err := c.Encode()
	if err != nil {
		return nil, nil, fmt.Errorf("instadump: encoding the commit object of snapshot %d: %w", h.snap.ID, err)
	}
	next.base, next.baseBytes = h.snap.ID, len(b)
	return c, next, nil
}

// retain deletes what the store keeps beyond the newest Retain snapshots
// of the location's timeline: first the commit objects no kept snapshot
// needs, newest first, then the segments no kept commit object lists.
// Only objects of this lineage and of those it took over from are
// touched.
func (s *shipper) retain(ctx context.Context) error {
	tl := s.loc.timeline()
	needed := map[*commitObj]bool{}
	for _, e := range tl[max(0, len(tl)-s.o.Retain):] {
		for o := e.obj; o != nil && o.c != nil && !needed[o]; o = e.lin.commits[o.c.Prev] {
			needed[o] = true
			if o.c.Full() {
				break
			}
		}
	}
	segs := map[string]bool{}
	for o := range needed {
		for _, sg := range o.c.Segments {
			segs[replica.SegmentKey(o.c.Lineage, sg)] = true
		}
	}
	lins := slices.SortedFunc(maps.Values(s.loc.lineages), func(a, b *lineageObjs) int { return bytes.Compare(a.id[:], b.id[:]) })
	for _, lo := range lins {
		// Newest first: whatever a crash leaves between two deletions,
		// the chain of every commit object left is whole.
		for _, id := range slices.Backward(slices.Sorted(maps.Keys(lo.commits))) {
			if o := lo.commits[id]; !needed[o] {
				if err := s.st.Delete(ctx, o.key); err != nil {
					return fmt.Errorf("instadump: retention: deleting %s: %w", o.key, err)
				}
				delete(lo.commits, id)
			}
		}
	}
	for _, lo := range lins {
		for _, key := range slices.Sorted(maps.Keys(lo.segs)) {
			if !segs[key] {
				if err := s.st.Delete(ctx, key); err != nil {
					return fmt.Errorf("instadump: retention: deleting %s: %w", key, err)
				}
				delete(lo.segs, key)
				if lo.id == s.lin.ID {
					if _, _, id, _, ok := replica.ParseKey(key); ok {
						s.mu.Lock()
						delete(s.present, id)
						s.mu.Unlock()
					}
				}
			}
		}
	}
	return nil
}

// heldSnapshot is a retained snapshot whose segments are held open.
type heldSnapshot struct {
	snap    Snapshot
	nextSeg uint64
	states  map[string]Ref
	segs    []heldSegment // by ID
	release func()
}

// heldSegment is a segment file held open: a read of f works even once
// garbage collection has deleted its name.
type heldSegment struct {
	ref replica.SegmentRef
	f   io.ReaderAt
}

// holdSnapshot returns retained snapshot id with its segments held open,
// or false if it is not retained. tags caches the segments' tags by ID
// (a segment's ID names one file for the life of the engine).
func (e *Engine) holdSnapshot(id uint64, tags map[uint64]uint64) (*heldSnapshot, bool, error) {
	e.mu.Lock()
	i := e.index(id)
	if i < 0 {
		e.mu.Unlock()
		return nil, false, nil
	}
	h := &heldSnapshot{snap: e.snaps[i].Snapshot, nextSeg: e.snaps[i].nextSeg, states: e.statesAt(i)}
	var held []*segReader
	h.release = func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, r := range held {
			e.release(r)
		}
		held = nil
	}
	var err error
	for _, sid := range SegmentsOf(h.states) {
		var r *segReader
		if r, err = e.acquire(sid); err != nil {
			break
		}
		held = append(held, r)
	}
	e.mu.Unlock()
	if err != nil {
		h.release()
		return nil, true, fmt.Errorf("instadump: holding snapshot %d to ship it: %w", id, err)
	}
	for _, r := range held {
		tag, ok := tags[r.ID()]
		if !ok {
			// The trailer's checksum of itself: checked when the
			// segment was opened, and a fingerprint of its index.
			var b [8]byte
			if _, err := r.f.ReadAt(b[:], r.Size()-segment.TrailerSize+32); err != nil {
				h.release()
				return nil, true, fmt.Errorf("instadump: reading the trailer of %s: %w", r.File(), err)
			}
			tag = binary.LittleEndian.Uint64(b[:])
			tags[r.ID()] = tag
		}
		h.segs = append(h.segs, heldSegment{ref: replica.SegmentRef{ID: r.ID(), Size: r.Size(), Tag: tag}, f: r.f})
	}
	return h, true, nil
}
