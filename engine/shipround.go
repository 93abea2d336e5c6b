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
	} else if s.tidy {
		// Nothing shipped, so nothing checked the owner records this
		// round: a DB that took the location over may list, up to its
		// fork, what retention would delete.
		if err := s.checkOwner(ctx); err != nil {
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
	if s.relist {
		objs, err := list(ctx, s.st, replica.SegmentPrefix(s.lin.ID))
		if err != nil {
			return fmt.Errorf("instadump: listing the segments of lineage %s%s: %w", s.lin.ID, inStore(s.st, err), err)
		}
		s.listedSegments(objs)
		s.relist = false
	}
	p := s.pending
	if p == nil {
		return nil
	}
	s.pending = nil
	theirs, err := s.readBack(ctx, p.key, replica.MaxCommitSize)
	switch {
	case errors.Is(err, replica.ErrNotFound):
		s.tried[p.key] = p.sum() // it may land yet
		return nil
	case err != nil:
		s.pending = p
		return fmt.Errorf("instadump: reading back %s: %w", where(s.st, p.key), err)
	case bytes.Equal(theirs, p.b):
		return s.confirm(ctx, p.obj(), func() error { s.committed(p); return nil })
	}
	// Another object under its key: an earlier Create of this
	// directory's, landed late, or another copy's.
	c, sum, derr := replica.DecodeCommit(theirs, where(s.st, p.key))
	var co *commitObj
	if derr == nil {
		if co, err = s.ours(p.key, c, sum, len(theirs)); err != nil {
			return err
		}
	}
	if co == nil {
		return s.fenced("another process shipped snapshot %d of this DB's lineage %s first: a copy of this DB's directory replicates here too", p.c.Snapshot, s.lin.ID)
	}
	return s.confirm(ctx, co, func() error { return s.landed(co) })
}

// listedSegments makes what the shipper knows of its lineage's segments
// what a List of them found (objs, which may hold other objects too).
func (s *shipper) listedSegments(objs []replica.Object) {
	ours := s.loc.lineages[s.lin.ID]
	clear(ours.segs)
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.present)
	for _, o := range objs {
		if kind, l, id, _, ok := replica.ParseKey(o.Key); ok && kind == "seg" && l == s.lin.ID {
			ours.segs[o.Key] = o.Size
			s.present[id] = true
		}
	}
}

// confirm makes sure commit object co, just created or found to be this
// process's, went in alone, and then calls done: a List of the owner
// records finds the lineage still owns the location, and a List of the
// lineage (alone) finds no commit object of another process, and every
// segment co lists. A copy of this directory that listed before co was
// created, and created its own after, finds co in its List after: of
// two such Creates, at least one is seen. Seeing one, or a new owner,
// the shipper is fenced, and deletes co again (the other's snapshots go
// on alone, or neither's) unless a commit object of another process
// follows it: co may be that process's too, the same bytes (a copy of
// the directory holds the same snapshots). A segment gone (another
// copy's retention deleted it) fails the round: the next one uploads it
// again.
func (s *shipper) confirm(ctx context.Context, co *commitObj, done func() error) error {
	err := s.checkOwner(ctx)
	if err == nil {
		err = s.alone(ctx, co.key)
	}
	if err == nil {
		if k := s.loc.missing(s.entry(co)); k != "" {
			// No other process's commit object was listed (alone), so
			// none follows it: deleted, it is created again.
			if err := s.withdraw(ctx, co); err != nil {
				return err
			}
			return fmt.Errorf("instadump: segment %s of snapshot %d is gone from the store since it was uploaded (another copy of this DB's directory may replicate here): the snapshot is shipped again: %w", k, co.c.Snapshot, replica.ErrUnavailable)
		}
		return done()
	}
	if !errors.Is(err, ErrFenced) {
		s.tried[co.key] = co.sum // the next round finds it this process's
		return err
	}
	if f := s.follower(co); f != nil {
		return fmt.Errorf("%w; its snapshot %d stays in the store: the other's snapshot %d follows it", err, co.c.Snapshot, f.Snapshot)
	}
	if derr := s.withdraw(ctx, co); derr != nil {
		return fmt.Errorf("%w; its own snapshot %d, created meanwhile, is still in the store: delete %s (%v)", err, co.c.Snapshot, where(s.st, co.key), derr)
	}
	return fmt.Errorf("%w; its own snapshot %d, created meanwhile, was deleted again", err, co.c.Snapshot)
}

// entry is commit object co of this lineage as an entry of its timeline.
func (s *shipper) entry(co *commitObj) entry {
	return entry{lin: s.loc.lineages[s.lin.ID], obj: co, id: co.c.Snapshot}
}

// broken says whether the store lacks what commit object co of this
// lineage needs, as far as the shipper knows: a segment, or a commit
// object of its chain.
func (s *shipper) broken(co *commitObj) bool { return s.loc.complete(s.entry(co)) != nil }

// follower returns a commit object of another process the last List of
// the lineage found that follows co, or nil: co may be that process's
// too, the same bytes (a copy of the directory holds the same
// snapshots), and must stay.
func (s *shipper) follower(co *commitObj) *replica.Commit {
	for _, f := range s.foreign {
		if f.Prev == co.c.Snapshot && f.PrevSum == co.sum {
			return f
		}
	}
	return nil
}

// withdraw deletes this directory's commit object co from the store.
func (s *shipper) withdraw(ctx context.Context, co *commitObj) error {
	if err := s.st.Delete(ctx, co.key); err != nil {
		return fmt.Errorf("instadump: deleting %s: %w", where(s.st, co.key), err)
	}
	delete(s.loc.lineages[s.lin.ID].commits, co.c.Snapshot)
	return nil
}

// committed records that commit object p is in the store.
func (s *shipper) committed(p *pendingCommit) {
	co := p.obj()
	p.next.sum = co.sum
	s.loc.lineages[s.lin.ID].commits[p.c.Snapshot] = co
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
	if err := s.upload(ctx, h); err != nil {
		return err
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
	if err := s.noteShipped(id, p.sum()); err != nil {
		return err
	}
	// Listed right before the Create, and again right after (confirm).
	if err := s.alone(ctx, ""); err != nil {
		return err
	}
	if co := s.newest(); co != nil {
		// An earlier Create of this directory's, landed late: listed
		// just now, newer than the last it knew of.
		if err := s.confirm(ctx, co, func() error { return s.landed(co) }); err != nil || co.c.Snapshot >= id {
			return err
		}
		return s.ship(ctx, id) // on it
	}
	if err := s.upload(ctx, h); err != nil { // any the List found gone
		return err
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
	return s.confirm(ctx, p.obj(), func() error { s.committed(p); return nil })
}

// upload uploads the segments of h the store lacks, as far as the
// shipper knows.
func (s *shipper) upload(ctx context.Context, h *heldSnapshot) error {
	ours := s.loc.lineages[s.lin.ID]
	for _, sg := range h.segs {
		key := replica.SegmentKey(s.lin.ID, sg.ref)
		if size, ok := ours.segs[key]; ok && size == sg.ref.Size {
			continue
		}
		if err := s.st.Put(ctx, key, io.NewSectionReader(sg.f, 0, sg.ref.Size), sg.ref.Size); err != nil {
			return fmt.Errorf("instadump: uploading segment %s of snapshot %d: %w", segment.FileName(sg.ref.ID), h.snap.ID, err)
		}
		ours.segs[key] = sg.ref.Size
		s.mu.Lock()
		s.present[sg.ref.ID] = true
		s.mu.Unlock()
	}
	return nil
}

// alone makes sure, around the Create of a commit object, that the
// store holds no commit object of this lineage but those this process
// found at start, shipped, and mine (the one it created, if any): a copy
// of this DB's directory that ships other snapshot IDs is seen by no
// Create of one ID. One List of the lineage, which also tells which of
// its segments the store holds; a commit object not known is read: one
// gone since (a List lagging a Delete) is passed over, one of this
// directory's (ours) is taken in.
func (s *shipper) alone(ctx context.Context, mine string) error {
	objs, err := list(ctx, s.st, replica.LineagePrefix(s.lin.ID))
	if err != nil {
		return fmt.Errorf("instadump: listing lineage %s%s: %w", s.lin.ID, inStore(s.st, err), err)
	}
	s.listedSegments(objs)
	ours := s.loc.lineages[s.lin.ID]
	s.foreign = s.foreign[:0]
	var fenced error
	var taken []*commitObj // this directory's, taken in
	for _, o := range objs {
		kind, l, id, _, ok := replica.ParseKey(o.Key)
		if !ok || kind != "snap" || l != s.lin.ID || o.Key == mine || ours.commits[id] != nil {
			continue
		}
		b, err := s.readBack(ctx, o.Key, replica.MaxCommitSize)
		if errors.Is(err, replica.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("instadump: reading %s: %w", where(s.st, o.Key), err)
		}
		c, sum, derr := replica.DecodeCommit(b, where(s.st, o.Key))
		if derr == nil {
			co, err := s.ours(o.Key, c, sum, len(b))
			if err != nil {
				return err
			}
			if co != nil {
				taken = append(taken, co)
				continue
			}
			s.foreign = append(s.foreign, c)
		}
		if fenced == nil {
			fenced = s.fenced("it holds snapshot %d of this DB's lineage %s, which this process did not ship: a copy of this DB's directory replicates here too", id, s.lin.ID)
		}
	}
	// A Create of this directory's that landed after retention deleted
	// what it needs: it never was a snapshot of the store.
	for _, co := range taken {
		if s.broken(co) && s.follower(co) == nil {
			if err := s.withdraw(ctx, co); err != nil {
				return err
			}
		}
	}
	return fenced
}

// newest returns the newest commit object of this lineage that is newer
// than the last this process shipped or found, or nil.
func (s *shipper) newest() *commitObj {
	var newest *commitObj
	for id, co := range s.loc.lineages[s.lin.ID].commits {
		if co.c != nil && (s.last == nil || id > s.last.id) && (newest == nil || id > newest.c.Snapshot) {
			newest = co
		}
	}
	return newest
}

// ours returns commit object c, with checksum sum and size bytes, read
// under key, if it is this directory's: a Create that failed here and
// landed late (its checksum is one tried), or one of a snapshot this
// directory retains, the same (a Create of an earlier process, landed
// after this one started). It joins the lineage's commit objects, which
// retention sees. Nil if it is another process's.
func (s *shipper) ours(key string, c *replica.Commit, sum uint64, size int) (*commitObj, error) {
	if c.Lineage != s.lin.ID || replica.CommitKey(c.Lineage, c.Snapshot) != key {
		return nil, nil
	}
	if tried, ok := s.tried[key]; !ok || tried != sum {
		retained, err := s.sameAsLocal(c)
		if errors.Is(err, ErrFenced) || err == nil && !retained {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
	}
	co := &commitObj{key: key, size: int64(size), c: c, sum: sum}
	s.loc.lineages[s.lin.ID].commits[c.Snapshot] = co
	delete(s.tried, key)
	s.tidy = true
	return co, nil
}

// landed takes commit object co, which landed late, as shipped if it is
// newer than the last this process knows of, noting it in LINEAGE.
func (s *shipper) landed(co *commitObj) error {
	if s.last != nil && co.c.Snapshot <= s.last.id {
		return nil
	}
	if err := s.noteStored(co.c.Snapshot, co.sum); err != nil {
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
