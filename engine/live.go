package engine

import (
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

// liveSet counts the bytes each segment holds for a set of state
// locations: a value's stored bytes and its index entry, once however
// many snapshots reference it. Compaction and tools share this measure.
type liveSet map[liveLoc]int64

type liveLoc struct {
	seg uint64
	off int64
}

func (l liveSet) add(name string, ref manifest.StateRef) {
	l[liveLoc{ref.Segment, ref.Offset}] = ref.StoredLen + segment.EntryHeaderSize + int64(len(name))
}

// bySegment returns the live bytes of each segment.
func (l liveSet) bySegment() map[uint64]int64 {
	out := map[uint64]int64{}
	for loc, n := range l {
		out[loc.seg] += n
	}
	return out
}

// LiveBytes returns, for each segment that snaps reference, the bytes of
// it they use: values with their index entries, each counted once.
func LiveBytes(snaps []manifest.Snapshot) map[uint64]int64 {
	l := liveSet{}
	for i := range snaps {
		for name, ref := range snaps[i].States {
			l.add(name, ref)
		}
	}
	return l.bySegment()
}
