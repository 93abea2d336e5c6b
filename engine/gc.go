package engine

import (
	"slices"
	"strings"

	"github.com/instadump/instadump/segment"
)

// Garbage collection: a segment is deleted once no retained snapshot
// uses a value in it; when more than half of the bytes of the segments in
// use are dead (values no retained snapshot uses), the next commit
// rewrites every value of the current snapshot into one fresh segment
// (compaction). The bookkeeping costs each commit what it changed.

// liveBytes counts, per segment, the bytes (stored value and index
// entry) of the values retained snapshots use, each once however many
// use it, and remembers when values stopped being current, so that
// retention can retire them.
type liveBytes struct {
	bySeg     map[uint64]int64 // live bytes of each segment in use
	body      map[uint64]int64 // bytes past the header and trailer of each segment in use
	live, all int64            // sums of bySeg and body
	dying     []dying          // values no longer current, oldest first
}

// dying is a value that snapshot after no longer uses.
type dying struct {
	after uint64
	seg   uint64
	n     int64
}

func (l *liveBytes) add(seg uint64, n int64) {
	if l.bySeg == nil {
		l.bySeg, l.body = map[uint64]int64{}, map[uint64]int64{}
	}
	l.bySeg[seg] += n
	l.live += n
}

// sized records the size of a segment in use.
func (l *liveBytes) sized(seg uint64, size int64) {
	if _, ok := l.body[seg]; !ok && l.bySeg[seg] > 0 {
		l.body[seg] = size - segment.MinFileSize
		l.all += size - segment.MinFileSize
	}
}

// change accounts for state prev (had: it existed) becoming next
// (has: it exists) in snapshot id.
func (l *liveBytes) change(id uint64, prev *Ref, had bool, next *Ref, has bool) {
	var prevBuf, nextBuf [4]Loc // a value state has one location
	var old, cur []Loc
	if had {
		old = appendLocs(prevBuf[:0], prev)
	}
	if has {
		cur = appendLocs(nextBuf[:0], next)
	}
	in := func(list []Loc) func(Loc) bool { // a linear search is quickest for a few
		if len(list) <= 8 {
			return func(x Loc) bool { return slices.Contains(list, x) }
		}
		set := make(map[Loc]bool, len(list))
		for _, x := range list {
			set[x] = true
		}
		return func(x Loc) bool { return set[x] }
	}
	inOld, inCur := in(old), in(cur)
	for i := range cur {
		if !inOld(cur[i]) {
			l.add(cur[i].Segment, locSize(&cur[i]))
		}
	}
	for i := range old { // in prev's order, for determinism
		if !inCur(old[i]) {
			l.dying = append(l.dying, dying{after: id, seg: old[i].Segment, n: locSize(&old[i])})
		}
	}
}

// age retires the values no snapshot from oldest on uses, and returns the
// segments left with no live bytes.
func (l *liveBytes) age(oldest uint64) (garbage []uint64) {
	k := 0
	for ; k < len(l.dying) && l.dying[k].after <= oldest; k++ {
		d := l.dying[k]
		l.bySeg[d.seg] -= d.n
		l.live -= d.n
		if l.bySeg[d.seg] == 0 {
			garbage = append(garbage, d.seg)
			delete(l.bySeg, d.seg)
			l.all -= l.body[d.seg]
			delete(l.body, d.seg)
		}
	}
	l.dying = l.dying[k:]
	return garbage
}

// wasteful says whether more than half of the bytes of the segments in
// use are dead.
func (l *liveBytes) wasteful() bool { return l.all-l.live > l.live }

// account builds the live bytes of the retained snapshots at recovery,
// as if each had been committed in turn. Call with e.mu held.
func (e *Engine) account() {
	if len(e.snaps) == 0 {
		return
	}
	for _, r := range e.statesAt(0) {
		e.live.change(e.snaps[0].ID, nil, false, &r, true)
	}
	for _, s := range e.snaps[1:] {
		for _, u := range s.undo {
			i, has := slices.BinarySearchFunc(s.changed, u.name, func(r Ref, n string) int { return strings.Compare(r.Name, n) })
			var next Ref
			if has {
				next = s.changed[i]
			}
			prev, had := s.before(u)
			e.live.change(s.ID, prev, had, &next, has)
		}
	}
}

// collect deletes the segments no retained snapshot uses any more. A
// failure leaves garbage for the next open to remove. Call with commitMu
// held.
func (e *Engine) collect(garbage []uint64) {
	for _, id := range garbage {
		e.mu.Lock()
		if r := e.readers[id]; r != nil {
			e.retire(r)
		}
		e.mu.Unlock()
		// No directory sync: a removal that a crash undoes leaves an
		// orphan, which the next open removes.
		name := segment.FileName(id)
		if err := e.fs.Remove(e.path(name)); err != nil {
			e.log.Warn("instadump: cannot delete an unused segment; the next open will", "file", name, "err", err)
		}
	}
}

// LiveBytes returns, for each segment the retained snapshots use, the
// bytes of it they use: values with their index entries, each counted
// once.
func (e *Engine) LiveBytes() map[uint64]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[uint64]int64, len(e.live.bySeg))
	for id, n := range e.live.bySeg {
		out[id] = n
	}
	return out
}
