package engine

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/segment"
)

func TestRetentionAndGC(t *testing.T) {
	m, e := openMem(t, Options{Retain: 2})
	for i := 0; i < 6; i++ {
		commit(t, e, "a", fmt.Sprint(i), fmt.Sprintf("s%d", i), "x")
	}
	snaps := e.Snapshots()
	if len(snaps) != 2 || snaps[0].ID != 5 || snaps[1].ID != 6 {
		t.Fatalf("retained %v", snaps)
	}
	used := segmentsInUse(t, e)
	for _, n := range files(t, m) {
		if id, ok := segment.ParseFileName(n); ok && !used[id] {
			t.Fatalf("unused segment %s kept (files %v)", n, files(t, m))
		}
	}
	if got := contents(t, e, 5)["a"]; got != "4" {
		t.Fatalf("snapshot 5 a=%q", got)
	}
	e.Close()
}

// Drops remove a state from the new snapshot only; a commit of drops
// alone makes a snapshot.
func TestDrop(t *testing.T) {
	m, e := openMem(t, Options{})
	commit(t, e, "a", "1", "b", "2")
	s, err := e.Commit(nil, []string{"a"})
	if err != nil || s.ID != 2 || s.States != 1 {
		t.Fatalf("drop: %+v %v", s, err)
	}
	e.Close()
	e = open(t, m, Options{})
	defer e.Close()
	if got := fmt.Sprint(contents(t, e, 0)); got != "map[b:2]" {
		t.Fatalf("after the drop: %s", got)
	}
	if got := fmt.Sprint(contents(t, e, 1)); got != "map[a:1 b:2]" {
		t.Fatalf("the snapshot before: %s", got)
	}
}

func TestOrphansRemoved(t *testing.T) {
	m := savedA(t, "1")
	for _, n := range []string{"000099.seg", "CURRENT.tmp", "MANIFEST-000050", "x.tmp", "notes.txt"} {
		f, _ := m.Create(filepath.Join(dir, n))
		f.Write([]byte("junk"))
		f.Close()
	}
	e := open(t, m, Options{})
	defer e.Close()
	if got := e.Report().Removed; !slices.Equal(got, []string{"000099.seg", "CURRENT.tmp", "MANIFEST-000050"}) {
		t.Fatalf("removed %v", got)
	}
	// Files that are not the engine's stay.
	if fs := files(t, m); !slices.Contains(fs, "x.tmp") || !slices.Contains(fs, "notes.txt") {
		t.Fatalf("a file not the engine's was removed: %v", fs)
	}
	if got := contents(t, e, 0); got["a"] != "1" {
		t.Fatalf("contents %v", got)
	}
	// A new segment does not reuse the orphan's number.
	commit(t, e, "a", "2")
	if r, _ := e.Lookup(0, "a"); r.Value.Segment <= 99 {
		t.Fatalf("segment %d reuses an old number", r.Value.Segment)
	}
}

func TestManifestRollover(t *testing.T) {
	m, e := openMem(t, Options{ManifestLimit: 1})
	start := e.manNum
	for i := 0; i < 40; i++ {
		commit(t, e, "a", fmt.Sprint(i))
	}
	// Each fresh manifest rolls over once it is four times its start.
	if e.manNum < start+3 {
		t.Fatalf("manifest %d after 40 commits: want at least %d", e.manNum, start+3)
	}
	var mans []string
	for _, n := range files(t, m) {
		if strings.HasPrefix(n, "MANIFEST-") {
			mans = append(mans, n)
		}
	}
	if len(mans) != 1 {
		t.Fatalf("manifests %v", mans)
	}
	e.Close()
	e = open(t, m, Options{})
	defer e.Close()
	if len(e.Snapshots()) != 3 || contents(t, e, 0)["a"] != "39" || contents(t, e, 38)["a"] != "37" {
		t.Fatalf("after rollovers: %v %v", e.Snapshots(), contents(t, e, 0))
	}
}

func segmentBytes(t *testing.T, fsys FS) int64 {
	var size int64
	for _, n := range files(t, fsys) {
		if _, ok := segment.ParseFileName(n); ok {
			f, _ := fsys.Open(filepath.Join(dir, n))
			sz, _ := f.Size()
			f.Close()
			size += sz
		}
	}
	return size
}

func TestCompactionBoundsSpace(t *testing.T) {
	m, e := openMem(t, Options{Level: segment.LevelNone})
	big := strings.Repeat("x", 1000)
	var kv []string
	for i := 0; i < 100; i++ {
		kv = append(kv, fmt.Sprintf("s%03d", i), big)
	}
	commit(t, e, kv...)
	want := map[string]string{}
	for i := 0; i < 100; i++ {
		want[fmt.Sprintf("s%03d", i)] = big
	}
	for round := 0; round < 60; round++ {
		// Each segment also holds a small value that never changes, so
		// no segment ever dies of itself: only compaction bounds space.
		anchor := fmt.Sprintf("anchor%03d", round)
		ch := []string{anchor, "."}
		want[anchor] = "."
		for i := 0; i < 10; i++ {
			k, v := fmt.Sprintf("s%03d", (round*10+i*7)%100), fmt.Sprintf("%s%d", big, round)
			ch = append(ch, k, v)
			want[k] = v
		}
		commit(t, e, ch...)
		if size, live := segmentBytes(t, m), int64(100*1000); size > 4*live {
			t.Fatalf("round %d: %d bytes of segments for %d live", round, size, live)
		}
	}
	if e.compactedAt == 0 {
		t.Fatal("no compaction ran")
	}
	if got := contents(t, e, 0); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatal("contents differ after compactions")
	}
	e.Close()
	e = open(t, m, Options{})
	defer e.Close()
	if got := contents(t, e, 0); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatal("contents differ after reopening")
	}
}

// A value read while a commit drops the last snapshot using its segment
// still reads: Hold keeps the segment open.
func TestHoldOutlivesCollection(t *testing.T) {
	m, e := openMem(t, Options{Retain: 1})
	defer e.Close()
	commit(t, e, "a", "old")
	refs, release, ok, err := e.Hold(0, []string{"a", "missing"})
	if err != nil || !ok || refs[1].Kind != 0 {
		t.Fatalf("hold: %v %v %+v", ok, err, refs)
	}
	commit(t, e, "a", "new")
	if slices.Contains(files(t, m), segment.FileName(refs[0].Value.Segment)) {
		t.Fatal("the old segment was not deleted")
	}
	if got, err := e.Read(refs[0].Value); err != nil || string(got) != "old" {
		t.Fatalf("held read: %q %v", got, err)
	}
	release()
	if _, err := e.Read(refs[0].Value); !errors.Is(err, errs.ErrMissing) {
		t.Fatalf("read after release: %v", err)
	}
	if _, _, ok, _ := e.Hold(99, nil); ok {
		t.Fatal("held a snapshot that is not retained")
	}
}

// A commit with nothing to write makes no snapshot, even when a
// compaction is due (found by FuzzCrashRecovery: the model expects the
// current snapshot back).
func TestEmptyCommitDoesNotCompact(t *testing.T) {
	e := open(t, vfs.NewMem(), Options{})
	defer e.Close()
	s := commit(t, e, "a", "1")
	e.compact = true
	if got, err := e.Commit(nil, nil); err != nil || got != s {
		t.Fatalf("empty commit with a compaction due: %+v, %v", got, err)
	}
	if got := commit(t, e, "b", "2"); got.ID != s.ID+1 || e.compactedAt != got.ID {
		t.Fatalf("the next commit: %+v, compacted at %d", got, e.compactedAt)
	}
}

// The segments the retained snapshots use, found from the undo entries,
// are those of every retained snapshot's states, rebuilt one by one.
func TestRetainedSegments(t *testing.T) {
	_, e := openMem(t, Options{Retain: 4})
	defer e.Close()
	for i := range 9 {
		switch i % 3 {
		case 0:
			commit(t, e, "a", fmt.Sprint(i), fmt.Sprint("s", i), "x")
		case 1:
			commit(t, e, "b", fmt.Sprint(i))
		default:
			if _, err := e.Commit(nil, []string{fmt.Sprint("s", i-2)}); err != nil {
				t.Fatal(err)
			}
		}
		e.mu.Lock()
		want := map[uint64]bool{}
		for k := range e.snaps {
			for _, id := range SegmentsOf(e.statesAt(k)) {
				want[id] = true
			}
		}
		got := e.retainedSegments()
		e.mu.Unlock()
		if !slices.Equal(got, slices.Sorted(maps.Keys(want))) {
			t.Fatalf("after commit %d: %v, want %v", i, got, slices.Sorted(maps.Keys(want)))
		}
	}
}

// A first commit's full record, however large, is what a rollover would
// write: the manifest does not roll over right after it, and rolls over
// once it has grown four times past it.
func TestFirstCommitDoesNotRollOver(t *testing.T) {
	_, e := openMem(t, Options{ManifestLimit: 1})
	defer e.Close()
	start := e.manNum
	var kv []string
	for i := range 100 {
		kv = append(kv, fmt.Sprintf("state-%03d", i), "v")
	}
	commit(t, e, kv...)
	if e.manNum != start {
		t.Fatalf("manifest %d after the first commit: want %d, not rolled over", e.manNum, start)
	}
	full := e.man.Size()
	for i := 0; e.manNum == start; i++ {
		if e.man.Size() > 4*full {
			t.Fatalf("manifest of %d bytes, four times its full record of %d, did not roll over", e.man.Size(), full)
		}
		commit(t, e, "state-000", fmt.Sprint(i))
	}
}

// The oldest retained snapshot keeps no delta against the one before it,
// which nothing rebuilds, after a commit and after recovery; the others
// keep theirs, and every retained snapshot reads back.
func TestOldestSnapshotKeepsNoDelta(t *testing.T) {
	m, e := openMem(t, Options{Retain: 2})
	for i := range 5 {
		commit(t, e, "a", fmt.Sprint(i), fmt.Sprintf("b%d", i), "x")
	}
	for round := range 2 {
		oldest, newest := e.snaps[0], e.snaps[1]
		if oldest.changed != nil || oldest.undo != nil || oldest.prevs != nil {
			t.Fatalf("round %d: the oldest retained snapshot keeps %d changed, %d undo, %d prior states", round, len(oldest.changed), len(oldest.undo), len(oldest.prevs))
		}
		if len(newest.changed) != 2 || len(newest.undo) != 2 || len(newest.prevs) != 1 {
			t.Fatalf("round %d: the newest snapshot keeps %d changed, %d undo, %d prior states; want 2, 2, 1", round, len(newest.changed), len(newest.undo), len(newest.prevs))
		}
		if got := contents(t, e, 4); got["a"] != "3" || got["b3"] != "x" || len(got) != 5 || got["b4"] != "" {
			t.Fatalf("round %d: snapshot 4 reads %v", round, got)
		}
		e.Close()
		e = open(t, m, Options{Retain: 2})
	}
	e.Close()
}
