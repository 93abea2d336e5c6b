package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/replica"
	"github.com/instadump/instadump/segment"
)

// ReplicaSnapshot describes a snapshot in a store.
type ReplicaSnapshot struct {
	ID       uint64
	Time     time.Time
	Lineage  string
	Full     bool     // its commit object holds the whole snapshot (not a delta)
	States   int      // how many states it holds; -1 if unknown
	Bytes    int64    // of the segments it uses
	Segments []uint64 // the segments it uses
	// Problem says why it cannot be restored (an object missing or
	// damaged, as far as listing and commit objects tell); nil if it can.
	Problem error
	// states, when known, and its lineage's objects.
	states map[string]Ref
	lin    *lineageObjs
	segs   []replica.SegmentRef
}

// ReplicaSnapshots lists the snapshots of the DB replicated in st, oldest
// first: the timeline of its owner (see package replica's doc). It reads
// every commit object, none of the segments. A location no DB replicates
// to is an error wrapping errs.ErrNoSnapshot.
func ReplicaSnapshots(ctx context.Context, st replica.Store) ([]ReplicaSnapshot, error) {
	loc, err := readLocation(ctx, st)
	if err != nil {
		return nil, errs.InReplica(err)
	}
	if len(loc.owners) == 0 {
		return nil, fmt.Errorf("%w: %s holds no replicated DB", errs.ErrNoSnapshot, st)
	}
	var out []ReplicaSnapshot
	for _, e := range loc.timeline() {
		rs := ReplicaSnapshot{ID: e.id, Lineage: e.lin.id.String(), States: -1, lin: e.lin}
		if c := e.obj.c; c != nil {
			rs.Time, rs.Full, rs.segs = c.Record.Time, c.Full(), c.Segments
			for _, sg := range c.Segments {
				rs.Bytes += sg.Size
				rs.Segments = append(rs.Segments, sg.ID)
			}
		}
		chain, err := loc.chain(e)
		if err == nil {
			rs.states, err = loc.fold(e, chain)
			rs.States = len(rs.states)
		}
		if err == nil {
			err = loc.complete(e)
		}
		rs.Problem = errs.InReplica(err)
		out = append(out, rs)
	}
	return out, nil
}

// VerifyReplica checks every snapshot of the DB replicated in st as
// Restore would, without writing a DB: every commit object and link,
// and every segment downloaded (once, into a temporary file) and
// checked byte by byte. It returns the snapshots and every problem
// found, each naming the object. progress, if not nil, is called as
// segment bytes are checked.
func VerifyReplica(ctx context.Context, st replica.Store, progress func(done, total int64)) ([]ReplicaSnapshot, []error) {
	snaps, err := ReplicaSnapshots(ctx, st)
	if err != nil {
		return nil, []error{err}
	}
	var problems []error
	type seg struct {
		lin *lineageObjs
		ref replica.SegmentRef
	}
	var todo []seg
	seen := map[string]bool{}
	var total, done int64
	for _, s := range snaps {
		if s.Problem != nil {
			problems = append(problems, fmt.Errorf("snapshot %d: %w", s.ID, s.Problem))
			continue
		}
		for _, sg := range s.segs {
			if key := replica.SegmentKey(s.lin.id, sg); !seen[key] {
				seen[key] = true
				todo = append(todo, seg{s.lin, sg})
				total += sg.Size
			}
		}
	}
	bad := map[string]bool{}
	buf := make([]byte, 1<<20)
	for _, sg := range todo {
		key := replica.SegmentKey(sg.lin.id, sg.ref)
		err := verifySegment(ctx, st, key, sg.ref, snaps, buf)
		if err != nil {
			bad[key] = true
			problems = append(problems, errs.InReplica(err))
			if ctx.Err() != nil {
				return snaps, problems
			}
		}
		done += sg.ref.Size
		if progress != nil {
			progress(done, total)
		}
	}
	for i := range snaps {
		s := &snaps[i]
		if s.Problem != nil {
			continue
		}
		for _, sg := range s.segs {
			if key := replica.SegmentKey(s.lin.id, sg); bad[key] {
				s.Problem = errs.InReplica(errs.Corruptf(where(st, key), 0, "snapshot %d uses a damaged segment", s.ID))
				break
			}
		}
	}
	return snaps, problems
}

// verifySegment downloads one segment into a temporary file and checks
// it, and the values every snapshot using it locates in it.
func verifySegment(ctx context.Context, st replica.Store, key string, ref replica.SegmentRef, snaps []ReplicaSnapshot, buf []byte) error {
	tmp, err := os.CreateTemp("", "instadump-verify-*.seg")
	if err != nil {
		return err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	f, err := download(ctx, st, key, ref.Size, func() (File, error) { return vfs.OS.Create(tmp.Name()) }, buf)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := checkSegment(f, ref, where(st, key))
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if s.Problem == nil && s.states != nil && slices.Contains(s.segs, ref) {
			if err := checkLocs(r, ref.ID, s.states, where(st, key)); err != nil {
				return fmt.Errorf("snapshot %d: %w", s.ID, err)
			}
		}
	}
	return nil
}

// checkSegment opens and verifies the segment sg in r: its header,
// trailer and index, its ID and tag, and every value.
func checkSegment(r io.ReaderAt, sg replica.SegmentRef, name string) (*segment.Reader, error) {
	sr, err := segment.Open(r, sg.Size, name)
	if err != nil {
		return nil, err
	}
	if sr.ID() != sg.ID {
		return nil, errs.Corruptf(name, 16, "the file holds segment %d, not %d", sr.ID(), sg.ID)
	}
	var b [8]byte
	if _, err := r.ReadAt(b[:], sg.Size-segment.TrailerSize+32); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if tag := binary.LittleEndian.Uint64(b[:]); tag != sg.Tag {
		return nil, errs.CorruptCause(errs.ErrChecksum, name, sg.Size-segment.TrailerSize+32, "the segment's tag is %016x, its key says %016x", tag, sg.Tag)
	}
	if err := sr.Verify(); err != nil {
		return nil, err
	}
	return sr, nil
}

// checkLocs checks that segment id (read by r) holds every value of
// states located in it, as the records say.
func checkLocs(r *segment.Reader, id uint64, states map[string]Ref, name string) error {
	for _, st := range states {
		var err error
		locs(&st, func(l *Loc) {
			if err != nil || l.Segment != id {
				return
			}
			want := segment.Entry{Name: l.Name, Offset: l.Offset, StoredLen: l.StoredLen, RawLen: l.RawLen, StoredSum: l.StoredSum, RawSum: l.RawSum}
			if got, ok := r.Find(l.Name); !ok || got != want {
				err = errs.Corruptf(name, l.Offset, "state %q has a value at offset %d (%d bytes), the records say, but the segment's index does not agree", st.Name, l.Offset, l.StoredLen)
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}
