package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/replica"
)

// A replica location as the shipper, Restore and the tools read it: its
// owner records and, for the lineages of its timeline, their commit
// objects and segments (the layout is in package replica's doc).

// location is what a Store holds.
type location struct {
	st       replica.Store
	owners   []replica.Owner // by Seq; the last owns the location
	lineages map[replica.Lineage]*lineageObjs
}

// lineageObjs are the objects of one lineage.
type lineageObjs struct {
	id      replica.Lineage
	commits map[uint64]*commitObj // by snapshot ID
	segs    map[string]int64      // key → size
}

// commitObj is a commit object as listed and read.
type commitObj struct {
	key  string
	size int64
	c    *replica.Commit // nil when it did not decode
	sum  uint64
	err  error // why it did not decode
}

// readOwners returns the owner records of st, by sequence number,
// reading only those not in known (the records read before).
func readOwners(ctx context.Context, st replica.Store, known []replica.Owner) ([]replica.Owner, error) {
	objs, err := list(ctx, st, replica.OwnerPrefix)
	if err != nil {
		return nil, fmt.Errorf("instadump: listing the owner records%s: %w", inStore(st, err), err)
	}
	byseq := map[uint64]replica.Owner{}
	for _, o := range known {
		byseq[o.Seq] = o
	}
	var out []replica.Owner
	for _, obj := range objs {
		seq, ok := replica.ParseOwnerKey(obj.Key)
		if !ok {
			continue
		}
		o, ok := byseq[seq]
		if !ok {
			b, err := getAll(ctx, st, obj.Key, obj.Size, replica.OwnerSize)
			if errors.Is(err, replica.ErrNotFound) {
				continue // deleted since the listing: not by instadump
			}
			if err == nil {
				o, err = replica.DecodeOwner(b, where(st, obj.Key))
			}
			if err == nil && o.Seq != seq {
				err = errs.Corruptf(where(st, obj.Key), 16, "owner record %d under the key of record %d", o.Seq, seq)
			}
			if err != nil {
				return nil, fmt.Errorf("instadump: reading the owner records%s: %w", inStore(st, err), err)
			}
		}
		out = append(out, o)
	}
	return out, nil
}

// readLineageObjs lists the objects of lineage l and reads its commit
// objects. One that does not decode is kept with its error.
func readLineageObjs(ctx context.Context, st replica.Store, l replica.Lineage) (*lineageObjs, error) {
	objs, err := list(ctx, st, replica.LineagePrefix(l))
	if err != nil {
		return nil, fmt.Errorf("instadump: listing lineage %s%s: %w", l, inStore(st, err), err)
	}
	lo := &lineageObjs{id: l, commits: map[uint64]*commitObj{}, segs: map[string]int64{}}
	for _, obj := range objs {
		kind, ol, num, _, ok := replica.ParseKey(obj.Key)
		if !ok || ol != l {
			continue
		}
		switch kind {
		case "seg":
			lo.segs[obj.Key] = obj.Size
		case "snap":
			co := &commitObj{key: obj.Key, size: obj.Size}
			b, err := getAll(ctx, st, obj.Key, obj.Size, replica.MaxCommitSize)
			switch {
			case errors.Is(err, replica.ErrNotFound):
				continue // deleted since the listing, by retention
			case errors.Is(err, errs.ErrCorrupt):
				co.err = err
			case err != nil:
				return nil, fmt.Errorf("instadump: reading lineage %s%s: %w", l, inStore(st, err), err)
			default:
				co.c, co.sum, co.err = replica.DecodeCommit(b, where(st, obj.Key))
				if co.err == nil && (co.c.Snapshot != num || co.c.Lineage != l) {
					co.c, co.err = nil, errs.Corruptf(where(st, obj.Key), 16, "the object holds snapshot %d of lineage %s", co.c.Snapshot, co.c.Lineage)
				}
			}
			lo.commits[num] = co
		}
	}
	return lo, nil
}

// readLocation reads the owner records of st and the objects of every
// lineage of its timeline.
func readLocation(ctx context.Context, st replica.Store) (*location, error) {
	owners, err := readOwners(ctx, st, nil)
	if err != nil {
		return nil, err
	}
	loc := &location{st: st, owners: owners, lineages: map[replica.Lineage]*lineageObjs{}}
	for i := len(owners) - 1; i >= 0; i-- {
		o := owners[i]
		if loc.lineages[o.Lineage] == nil {
			if loc.lineages[o.Lineage], err = readLineageObjs(ctx, st, o.Lineage); err != nil {
				return nil, err
			}
		}
		if !parentOf(owners, i) {
			break
		}
	}
	return loc, nil
}

// parentOf says whether owner record i took over from record i-1.
func parentOf(owners []replica.Owner, i int) bool {
	return i > 0 && !owners[i].Parent.IsZero() && owners[i-1].Lineage == owners[i].Parent
}

// entry is one snapshot of a location's timeline.
type entry struct {
	lin *lineageObjs
	obj *commitObj
	id  uint64
}

// timeline returns the location's snapshots, oldest first: the owner's,
// and before them its parent's up to the fork (and below the owner's
// first), and so on up the owner records while each took over from the
// one before.
func (loc *location) timeline() []entry {
	var out []entry // newest first, then reversed
	limit := uint64(math.MaxUint64)
	for i := len(loc.owners) - 1; i >= 0; i-- {
		o := loc.owners[i]
		lo := loc.lineages[o.Lineage]
		if lo == nil {
			break
		}
		lowest := limit
		for _, id := range slices.Backward(slices.Sorted(maps.Keys(lo.commits))) {
			if id <= limit {
				out = append(out, entry{lin: lo, obj: lo.commits[id], id: id})
				lowest = id - 1
			}
		}
		if !parentOf(loc.owners, i) {
			break
		}
		limit = min(lowest, o.Fork)
	}
	slices.Reverse(out)
	return out
}

// chain returns the commit objects that make snapshot e, from its base
// (full) to it, each link checked.
func (loc *location) chain(e entry) ([]*replica.Commit, error) {
	var chain []*replica.Commit
	o := e.obj
	for {
		if o.c == nil {
			return nil, o.err
		}
		c := o.c
		if n := len(chain); n > 0 {
			next := chain[n-1]
			if o.sum != next.PrevSum {
				return nil, errs.Corruptf(where(loc.st, o.key), 0, "snapshot %d follows an object of snapshot %d with checksum %016x, but this one's is %016x", next.Snapshot, c.Snapshot, next.PrevSum, o.sum)
			}
			if !c.Full() && c.Base != next.Base {
				return nil, errs.Corruptf(where(loc.st, o.key), 64, "snapshot %d has base %d, but the chain of snapshot %d starts at %d", c.Snapshot, c.Base, e.id, next.Base)
			}
		}
		chain = append(chain, c)
		if c.Full() {
			break
		}
		prev := e.lin.commits[c.Prev]
		if prev == nil {
			return nil, errs.Missing(where(loc.st, replica.CommitKey(e.lin.id, c.Prev)),
				"the commit object of snapshot %d is missing, and snapshot %d's chain of deltas needs it", c.Prev, e.id)
		}
		o = prev
	}
	if base := chain[len(chain)-1]; base.Snapshot != chain[0].Base {
		return nil, errs.Corruptf(where(loc.st, e.obj.key), 64, "snapshot %d names base %d, but its chain starts at %d", e.id, chain[0].Base, base.Snapshot)
	}
	slices.Reverse(chain)
	return chain, nil
}

// missing returns the first segment snapshot e lists that the store
// lacks (or holds with another size), or "".
func (loc *location) missing(e entry) string {
	for _, s := range e.obj.c.Segments {
		key := replica.SegmentKey(e.lin.id, s)
		if size, ok := e.lin.segs[key]; !ok || size != s.Size {
			return key
		}
	}
	return ""
}

// complete checks that snapshot e can be restored as far as the
// listing tells: its chain of commit objects decodes and links up, and
// every segment it lists is there with its size.
func (loc *location) complete(e entry) error {
	if _, err := loc.chain(e); err != nil {
		return err
	}
	if key := loc.missing(e); key != "" {
		return errs.Missing(where(loc.st, key), "segment %s of snapshot %d is missing (or of another size)", key, e.id)
	}
	return nil
}

// fold applies a chain of commit objects, from its full base on, and
// returns the states of its last snapshot, checked against the segments
// its commit object lists.
func (loc *location) fold(e entry, chain []*replica.Commit) (map[string]Ref, error) {
	states := map[string]Ref{}
	for _, c := range chain {
		key := where(loc.st, replica.CommitKey(e.lin.id, c.Snapshot))
		if c.Full() {
			clear(states)
		}
		for _, n := range c.Record.Removed {
			if _, ok := states[n]; !ok {
				return nil, errs.Corruptf(key, 0, "snapshot %d removes state %q, which snapshot %d does not have", c.Snapshot, n, c.Prev)
			}
			delete(states, n)
		}
		for _, r := range c.Record.States {
			states[r.Name] = r
		}
	}
	target := chain[len(chain)-1]
	used := map[uint64]bool{}
	for _, r := range states {
		locs(&r, func(l *Loc) { used[l.Segment] = true })
	}
	listed := map[uint64]bool{}
	for _, s := range target.Segments {
		listed[s.ID] = true
	}
	if !maps.Equal(used, listed) {
		return nil, errs.Corruptf(where(loc.st, e.obj.key), 0, "snapshot %d uses segments %v, but its commit object lists %v",
			e.id, slices.Sorted(maps.Keys(used)), slices.Sorted(maps.Keys(listed)))
	}
	return states, nil
}

// SegmentsOf returns the IDs of the segments states use, sorted.
func SegmentsOf(states map[string]Ref) []uint64 {
	ids := map[uint64]bool{}
	for _, r := range states {
		locs(&r, func(l *Loc) { ids[l.Segment] = true })
	}
	return slices.Sorted(maps.Keys(ids))
}

// fullRecord returns the full manifest record of snapshot s with states.
func fullRecord(s Snapshot, nextSeg uint64, states map[string]Ref) manifest.Record {
	rec := manifest.Record{Kind: manifest.Full, Snapshot: s.ID, Time: s.Time, NextSegment: nextSeg, Written: s.Written,
		States: slices.Collect(maps.Values(states))}
	sortRefs(rec.States)
	return rec
}
