package engine

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

// replayed returns the manifest file name as replayed.
func replayed(t *testing.T, fsys FS, name string) *manifest.Log {
	t.Helper()
	f, err := fsys.Open(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	size, _ := f.Size()
	data, _ := vfs.ReadAll(f, size)
	f.Close()
	log, err := manifest.ReplayBytes(data, name)
	if err != nil {
		t.Fatal(err)
	}
	return log
}

// A manifest damaged in its middle, opened with fallback: the segments
// of the snapshots past the damage (which may hold the only copy of
// intact values) are moved aside, never deleted, and the report says so.
func TestFallbackMiddleRecordKeepsSegments(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{Retain: 4})
	for i := range 4 {
		commit(t, e, fmt.Sprint("s", i), fmt.Sprint(i)) // snapshot i+1 writes segment i+1
	}
	man := manifest.FileName(e.manNum)
	e.Close()
	rewrite(t, m, man, flipAt(replayed(t, m, man).Offsets[2]+20))
	e = open(t, m, Options{Fallback: true, Retain: 4})
	defer e.Close()
	rep := e.Report()
	if !rep.FellBack || rep.UsedID != 2 {
		t.Fatalf("report %+v", rep)
	}
	for _, r := range rep.Removed {
		if _, ok := segment.ParseFileName(r); ok {
			t.Errorf("fallback deleted %s (removed %v)", r, rep.Removed)
		}
	}
	for _, seg := range []string{"000003.seg", "000004.seg"} {
		if !slices.Contains(files(t, m), seg+BrokenSuffix) || !slices.Contains(rep.Broken, seg+BrokenSuffix) {
			t.Errorf("%s not moved aside: broken %v, files %v", seg, rep.Broken, files(t, m))
		}
	}
}

// Without fallback, the segment of a save that crashed before its commit
// record (no record names it) is still removed.
func TestInterruptedSaveSegmentRemoved(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{})
	commit(t, e, "a", "1")
	e.Close()
	f, _ := m.Create(filepath.Join(dir, "000002.seg"))
	f.Write([]byte("half a segment"))
	f.Sync()
	f.Close()
	e = open(t, m, Options{})
	defer e.Close()
	if rep := e.Report(); !slices.Equal(rep.Removed, []string{"000002.seg"}) || len(rep.Broken) > 0 {
		t.Fatalf("report %+v", rep)
	}
}

// What a fallback moves aside is every segment no retained snapshot
// uses, not every segment the snapshot it loads does not use: a segment
// only an older retained snapshot uses stays, and that snapshot reads.
func TestFallbackKeepsOlderRetainedSegments(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{Retain: 4})
	commit(t, e, "a", "1") // segment 1: only snapshot 1 uses it
	commit(t, e, "a", "2") // segment 2
	commit(t, e, "a", "3") // segment 3, damaged below
	e.Close()
	rewrite(t, m, "000003.seg", flipAt(segment.HeaderSize+segment.ChunkHeaderSize))
	e = open(t, m, Options{Fallback: true, Retain: 4})
	defer e.Close()
	rep := e.Report()
	if !rep.FellBack || rep.UsedID != 2 || !slices.Contains(rep.Broken, "000003.seg"+BrokenSuffix) {
		t.Fatalf("report %+v", rep)
	}
	if !slices.Contains(files(t, m), "000001.seg") || slices.Contains(rep.Broken, "000001.seg"+BrokenSuffix) || slices.Contains(rep.Removed, "000001.seg") {
		t.Fatalf("the segment of retained snapshot 1 did not stay: broken %v, removed %v, files %v", rep.Broken, rep.Removed, files(t, m))
	}
	if got := contents(t, e, 1); got["a"] != "1" {
		t.Fatalf("snapshot 1: %v", got)
	}
}
