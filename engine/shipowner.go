package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/instadump/instadump/replica"
)

// lineage reads the DB's lineage, or makes one: a new one for a DB that
// never replicated, or one continuing from the old one for a DB that fell
// back to an older snapshot than one it may have shipped. A DB that fell
// back to a snapshot no older than any it may have shipped continues its
// lineage: nothing in the store is newer than where it is.
func (e *Engine) lineage() (Lineage, error) {
	if e.lin != nil { // settled by this open already
		return *e.lin, nil
	}
	l, ok, err := readLineage(e.fs, e.dir)
	if err != nil {
		return l, err
	}
	return e.settleLineage(l, ok)
}

// settleLineage is lineage with the LINEAGE file read: l, if ok.
func (e *Engine) settleLineage(l Lineage, ok bool) (Lineage, error) {
	cur, has := e.Current()
	below := ok && !l.Parent.IsZero() && has && cur.ID < l.Fork // back past where the lineage began
	if ok && (!e.report.FellBack || l.ShippedKnown && has && l.Shipped <= cur.ID && !below) {
		return l, nil
	}
	id, err := replica.NewLineage()
	if err != nil {
		return l, err
	}
	next := Lineage{ID: id}
	switch {
	case below:
		// Its snapshots up to cur are its parent's: it begins again from
		// there (it shipped nothing of its own, which all come after
		// its fork). Snapshot cur is on the timeline of its lineage
		// too, which may have taken the location over from the parent.
		next.Parent, next.Fork, next.Via = l.Parent, cur.ID, l.continued()
		e.log.Warn("instadump: the DB fell back to a snapshot older than where its lineage began, so it replicates as a new lineage from that snapshot of the lineage before", "lineage", next.ID, "parent", l.Parent, "fork", cur.ID)
	case ok && has:
		next.Parent, next.Fork = l.ID, cur.ID
		e.log.Warn("instadump: the DB fell back to an older snapshot, so it replicates as a new lineage that takes over from the old one", "lineage", next.ID, "parent", l.ID, "fork", cur.ID)
	}
	if err := writeLineage(e.fs, e.dir, next); err != nil {
		return l, err
	}
	e.lin = &next
	return next, nil
}

// fenced returns an error wrapping ErrFenced.
func (s *shipper) fenced(format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrFenced, s.st, fmt.Sprintf(format, args...))
}

// start takes ownership of the location (or finds it is fenced), and
// reads what the store holds of this lineage and those before it.
func (s *shipper) start(ctx context.Context) error {
	if err := s.own(ctx); err != nil {
		return err
	}
	loc, err := readLocation(ctx, s.st)
	if err != nil {
		return err
	}
	if loc.lineages[s.lin.ID] == nil {
		loc.lineages[s.lin.ID] = &lineageObjs{id: s.lin.ID, commits: map[uint64]*commitObj{}, segs: map[string]int64{}}
	}
	s.loc = loc
	ours := loc.lineages[s.lin.ID]
	s.mu.Lock()
	for key := range ours.segs {
		if _, _, id, _, ok := replica.ParseKey(key); ok {
			s.present[id] = true
		}
	}
	s.mu.Unlock()
	ids := slices.Sorted(maps.Keys(ours.commits))
	if l := s.lin; l.SumsKnown && l.Shipped != 0 && ours.commits[l.Shipped] == nil {
		// The last Create noted, which the store lacks: it may land yet.
		s.tried[replica.CommitKey(l.ID, l.Shipped)] = l.ShippedSum
	}
	if len(ids) == 0 {
		s.tidy = true
		return nil
	}
	newest := ids[len(ids)-1]
	s.floor = newest
	cur, _ := s.e.Current()
	if newest > cur.ID {
		return s.fenced("it holds snapshot %d of this DB's lineage %s, newer than this directory's newest, %d: another copy of this DB's directory replicates here, or this directory is an old copy (restore from the store to continue from it)", newest, s.lin.ID, cur.ID)
	}
	resumed, unnoted := false, false
	for _, id := range slices.Backward(ids) {
		co := ours.commits[id]
		if co.c == nil {
			s.log.Error("instadump: a commit object of this DB in the store is damaged; it is skipped", "err", co.err)
			continue
		}
		if resumed && (!s.lin.SumsKnown || id <= s.lin.Prev) {
			break
		}
		retained, err := s.sameAsLocal(co.c)
		if err != nil {
			return err
		}
		if !s.lin.ShippedKnown || !s.mayBeOurs(id, co.sum) {
			if !retained && s.lin.ShippedKnown {
				return s.fenced("its snapshot %d of this DB's lineage %s is not one this directory shipped last (%d) or before it (%d), nor one it retains: a copy of this DB's directory shipped it", id, s.lin.ID, s.lin.Shipped, s.lin.Prev)
			}
			if s.broken(co) {
				// A Create of its own that landed late, after retention
				// deleted what it needs: never a snapshot of the store.
				if err := s.withdraw(ctx, co); err != nil {
					return err
				}
				continue
			}
			unnoted = true // its own, as it retains it: noted below
		}
		if !resumed {
			s.shipped(&lastShipped{id: id, sum: co.sum, base: co.c.Base, time: co.c.Record.Time})
			resumed = true
		}
		// And every one after the last this directory knew in the store
		// when it noted its last (Prev): a copy's that got in while this
		// one was between its Create and the List after it, or had died
		// there, is not passed over.
	}
	if unnoted && s.lin.SumsKnown {
		// Noted now, so that the next open need not find it retained.
		if err := s.noteStored(s.last.id, s.last.sum); err != nil {
			return err
		}
	}
	s.tidy = true
	s.log.Info("instadump: replication resumes", "lineage", s.lin.ID, "shipped", s.floor)
	return nil
}

// mayBeOurs says whether snapshot id of the store, whose commit object
// has checksum sum, may be one this directory shipped, as LINEAGE notes:
// the last it may have shipped, or the one before (the last create may
// have failed). Without checksums (LINEAGE format 2), any not
// newer than the last.
func (s *shipper) mayBeOurs(id, sum uint64) bool {
	l := s.lin
	if !l.SumsKnown {
		return id <= l.Shipped
	}
	return id == l.Shipped && sum == l.ShippedSum || id == l.Prev && sum == l.PrevSum
}

// sameAsLocal checks that c, found in this lineage, is the local
// snapshot of its ID when that is still retained (true): the same time
// and the same segments. Otherwise another copy of this directory
// shipped it.
func (s *shipper) sameAsLocal(c *replica.Commit) (bool, error) {
	h, ok, err := s.e.holdSnapshot(c.Snapshot, s.tags)
	if err != nil || !ok {
		return false, err
	}
	defer h.release()
	refs := make([]replica.SegmentRef, len(h.segs))
	for i, sg := range h.segs {
		refs[i] = sg.ref
	}
	if !c.Record.Time.Equal(h.snap.Time) || !slices.Equal(refs, c.Segments) {
		return true, s.fenced("its snapshot %d of this DB's lineage %s is not this directory's snapshot %d: another copy of this DB's directory replicates here", c.Snapshot, s.lin.ID, c.Snapshot)
	}
	return true, nil
}

// own makes sure this DB's lineage owns the location: it claims an empty
// one, takes over from its parent, or finds it is fenced.
func (s *shipper) own(ctx context.Context) error {
	for range 8 {
		owners, err := readOwners(ctx, s.st, s.owners)
		if err != nil {
			return err
		}
		s.owners = owners
		next := replica.Owner{Seq: 1, Lineage: s.lin.ID, Parent: s.lin.Parent, Fork: s.lin.Fork, Time: time.Now().UTC()}
		if n := len(owners); n > 0 {
			cur := owners[n-1]
			switch {
			case cur.Lineage == s.lin.ID:
				s.owner = cur.Seq
				return nil
			case s.lin.mayTakeOver(cur.Lineage):
				// Take over from the owner this one was restored from
				// (or continues from).
				next.Seq, next.Parent = cur.Seq+1, cur.Lineage
			default:
				return s.notOwner(cur)
			}
		}
		err = s.st.Create(ctx, replica.OwnerKey(next.Seq), bytes.NewReader(next.Encode()), replica.OwnerSize)
		if err != nil && !errors.Is(err, replica.ErrExists) {
			return fmt.Errorf("instadump: claiming the location%s for lineage %s: %w", inStore(s.st, err), s.lin.ID, err)
		}
		if err == nil {
			s.owner = next.Seq
			s.owners = append(owners, next)
			if next.Seq == 1 {
				s.log.Info("instadump: replicating to an empty location: claimed it", "lineage", s.lin.ID)
			} else {
				s.log.Warn("instadump: took the replica location over from the owner this DB was restored from", "lineage", s.lin.ID, "from", next.Parent, "fork", s.lin.Fork)
			}
			return nil
		}
		// Someone else created that record first (or our own attempt
		// did, its answer lost): look again.
	}
	return fmt.Errorf("instadump: %s: the owner records keep changing while lineage %s tries to claim the location: %w", s.st, s.lin.ID, replica.ErrUnavailable)
}

// notOwner explains why cur's owning the location fences this DB.
func (s *shipper) notOwner(cur replica.Owner) error {
	for _, o := range s.owners {
		if o.Lineage == s.lin.ID {
			return s.fenced("lineage %s, restored from this DB, took the location over at %s (owner record %d): this DB no longer ships there; restore from the location to continue from its snapshots", cur.Lineage, cur.Time.Format(time.RFC3339), cur.Seq)
		}
	}
	if !s.lin.Parent.IsZero() {
		return s.fenced("it belongs to lineage %s, not to lineage %s, which owned it when this DB was restored: replicate to another location (prefix), or restore from this one to take it over", cur.Lineage, s.lin.Parent)
	}
	return s.fenced("it belongs to lineage %s, another DB: replicate to another location (prefix), or restore from this one to take it over", cur.Lineage)
}

// checkOwner makes sure no DB has taken the location over since: one
// List, and a Get of any new owner record.
func (s *shipper) checkOwner(ctx context.Context) error {
	owners, err := readOwners(ctx, s.st, s.owners)
	if err != nil {
		return err
	}
	s.owners = owners
	if n := len(owners); n == 0 || owners[n-1].Seq != s.owner {
		if n == 0 {
			return s.fenced("its owner records are gone: replicate to another location")
		}
		return s.notOwner(owners[n-1])
	}
	return nil
}
