package engine

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/instadump/instadump/internal/errs"
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
	m, e := openMem(t, Options{Retain: 4})
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
	m := savedA(t, "1")
	f, _ := m.Create(filepath.Join(dir, "000002.seg"))
	f.Write([]byte("half a segment"))
	f.Sync()
	f.Close()
	e := open(t, m, Options{})
	defer e.Close()
	if rep := e.Report(); !slices.Equal(rep.Removed, []string{"000002.seg"}) || len(rep.Broken) > 0 {
		t.Fatalf("report %+v", rep)
	}
}

// What a fallback moves aside is every segment no retained snapshot
// uses, not every segment the snapshot it loads does not use: a segment
// only an older retained snapshot uses stays, and that snapshot reads.
func TestFallbackKeepsOlderRetainedSegments(t *testing.T) {
	m, e := openMem(t, Options{Retain: 4})
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

// A complete last record whose checksum fails is damage, not a torn
// write: its snapshot may have been acknowledged. A strict Open fails,
// naming the manifest and the record's offset, and changes nothing. With
// Fallback, recovery loads the snapshot before it as any fallback does
// (FellBack, UsedID) and moves aside the segments only that record may
// name and the manifest holding it, never deleting them.
func TestDamagedLastRecord(t *testing.T) {
	m, e := openMem(t, Options{})
	commit(t, e, "a", "1")
	commit(t, e, "b", "2") // only snapshot 2 uses segment 2
	man := manifest.FileName(e.manNum)
	e.Close()
	log := replayed(t, m, man)
	rewrite(t, m, man, flipAt(log.Offsets[len(log.Offsets)-1]+manifest.FrameHeaderSize+2))
	damaged := func(what string, err error) {
		t.Helper()
		var ce *errs.CorruptError
		if !errors.Is(err, errs.ErrCorrupt) || !errors.Is(err, errs.ErrChecksum) || !errors.As(err, &ce) ||
			ce.File != filepath.Join(dir, man) || ce.Offset != log.Offsets[1] || ce.Hint != errs.HintDamagedTail {
			t.Errorf("%s: %v", what, err)
		}
		if msg := err.Error(); !strings.Contains(msg, "backup") || !strings.Contains(msg, "WithFallback") {
			t.Errorf("%s: no hint of what to do: %v", what, err)
		}
	}
	before := files(t, m)
	for _, o := range []Options{{ReadOnly: true}, {}} {
		e, err := Open(dir, Options{FS: m, ReadOnly: o.ReadOnly})
		if err == nil {
			e.Close()
			t.Fatalf("read-only %v: a strict Open loaded the snapshot before a damaged last record", o.ReadOnly)
		}
		damaged("strict open", err)
		if got := files(t, m); !slices.Equal(got, before) {
			t.Fatalf("read-only %v: a failed Open changed the directory: %v, was %v", o.ReadOnly, got, before)
		}
	}
	for _, o := range []Options{{ReadOnly: true, Fallback: true}, {Fallback: true}} {
		e = open(t, m, o)
		rep := e.Report()
		if got := contents(t, e, 1); got["a"] != "1" || got["b"] != "" {
			t.Fatalf("read-only %v: contents %v", o.ReadOnly, got)
		}
		if cur, _ := e.Current(); cur.ID != 1 {
			t.Fatalf("read-only %v: current snapshot %d", o.ReadOnly, cur.ID)
		}
		if rep.TornTail != nil {
			t.Errorf("read-only %v: a damaged record reported as a torn tail: %v", o.ReadOnly, rep.TornTail)
		}
		if !rep.FellBack || rep.UsedID != 1 || rep.Damaged != 0 || rep.Damage == nil {
			t.Errorf("read-only %v: not reported as a fallback: %+v", o.ReadOnly, rep)
		}
		damaged("damaged tail", rep.DamagedTail)
		if o.ReadOnly {
			if p := e.Verify(nil); len(p) == 0 || !errors.Is(p[0], errs.ErrCorrupt) || !strings.Contains(p[0].Error(), man) {
				t.Errorf("verify: %v", p)
			}
			e.Close()
			continue
		}
		for _, r := range rep.Removed {
			if r == "000002.seg" || r == man {
				t.Errorf("deleted %s", r)
			}
		}
		for _, f := range []string{"000002.seg" + BrokenSuffix, man + BrokenSuffix} {
			if !slices.Contains(rep.Broken, f) || !slices.Contains(files(t, m), f) {
				t.Errorf("%s not moved aside: broken %v, files %v", f, rep.Broken, files(t, m))
			}
		}
		e.Close()
	}
	// Moved aside once: the next open finds a healthy directory.
	e = open(t, m, Options{})
	defer e.Close()
	if rep := e.Report(); rep.DamagedTail != nil || rep.FellBack || len(rep.Broken) > 0 || len(rep.Removed) > 0 {
		t.Fatalf("reopen: %+v", rep)
	}
}

// A damaged record that is the manifest's only one leaves no snapshot
// to fall back to: Open fails even with Fallback, never starting empty,
// with CURRENT or without it, and touches no file.
func TestDamagedOnlyRecord(t *testing.T) {
	m, e := openMem(t, Options{})
	commit(t, e, "a", "1")
	man := manifest.FileName(e.manNum)
	e.Close()
	log := replayed(t, m, man)
	if len(log.Records) != 1 {
		t.Fatalf("%d records", len(log.Records))
	}
	rewrite(t, m, man, flipAt(log.Offsets[0]+manifest.FrameHeaderSize+2))
	before := files(t, m)
	for _, o := range []Options{{}, {Fallback: true}, {ReadOnly: true, Fallback: true}} {
		o.FS = m
		e, err := Open(dir, o)
		if err == nil {
			e.Close()
			t.Fatalf("%+v: opened with %d snapshots", o, len(e.Snapshots()))
		}
		if after := files(t, m); !slices.Equal(before, after) {
			t.Fatalf("%+v: files %v, then %v", o, before, after)
		}
		var ce *errs.CorruptError
		if !errors.As(err, &ce) || ce.File != filepath.Join(dir, man) || ce.Offset != log.Offsets[0] {
			t.Fatalf("%+v: %v", o, err)
		}
		if o.Fallback && ce.Hint != errs.HintNoFallback {
			t.Errorf("%+v: hint %q", o, ce.Hint)
		}
	}
	// Nor is it taken, without CURRENT, for a first manifest a crash
	// cut short: the directory is not new.
	if err := m.Remove(filepath.Join(dir, CurrentFile)); err != nil {
		t.Fatal(err)
	}
	if e, err := Open(dir, Options{FS: m}); err == nil {
		e.Close()
		t.Fatalf("without CURRENT: opened with %d snapshots", len(e.Snapshots()))
	}
}

// A directory where a segment should be is damage to that segment:
// ErrCorrupt naming the file, so that strict opens fail as for any
// damaged segment and fallback (read-only or not) gets past it.
func TestNonRegularSegment(t *testing.T) {
	m := savedA(t, "1", "2")
	seg := segment.FileName(2)
	m.Remove(filepath.Join(dir, seg))
	m.MkdirAll(filepath.Join(dir, seg))
	for _, ro := range []bool{true, false} {
		_, err := Open(dir, Options{FS: m, ReadOnly: ro})
		var ce *errs.CorruptError
		if !errors.As(err, &ce) || ce.File != filepath.Join(dir, seg) || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("read-only %v: open: %v", ro, err)
		}
	}
	e := open(t, m, Options{ReadOnly: true, Fallback: true})
	if rep := e.Report(); !rep.FellBack || rep.UsedID != 1 {
		t.Fatalf("read-only fallback: %+v", rep)
	}
	e.Close()
	e = open(t, m, Options{Fallback: true})
	defer e.Close()
	if got := contents(t, e, 0)["a"]; got != "1" || !slices.Contains(e.Report().Broken, seg+BrokenSuffix) {
		t.Fatalf("fallback: a=%q, report %+v", got, e.Report())
	}
}

// A manifest with no snapshot (cut back to its header, or inside its
// first record) beside segments that saves wrote: no crash leaves more
// than one such segment, so this is damage, and no open deletes them or
// starts empty. Without CURRENT and manifest, any segment is damage.
func TestNoSnapshotBesideSegments(t *testing.T) {
	saved := func(t *testing.T) (*vfs.MemFS, string) {
		m, e := openMem(t, Options{})
		for i := range 3 {
			commit(t, e, fmt.Sprint("s", i), fmt.Sprint(i)) // segment i+1
		}
		man := manifest.FileName(e.manNum)
		e.Close()
		return m, man
	}
	segs := []string{"000001.seg", "000002.seg", "000003.seg"}
	for _, damage := range []struct {
		name string
		do   func(t *testing.T, m *vfs.MemFS, man string)
	}{
		{"cut to its header", func(t *testing.T, m *vfs.MemFS, man string) {
			rewrite(t, m, man, cutTo(manifest.HeaderSize))
		}},
		{"cut in its first record", func(t *testing.T, m *vfs.MemFS, man string) {
			rewrite(t, m, man, cutTo(manifest.HeaderSize+12))
		}},
		{"cut to its header, one segment left", func(t *testing.T, m *vfs.MemFS, man string) {
			// As retention leaves a DB: its one segment is not the first.
			for _, n := range []string{"000001.seg", "000002.seg"} {
				if err := m.Remove(filepath.Join(dir, n)); err != nil {
					t.Fatal(err)
				}
			}
			rewrite(t, m, man, cutTo(manifest.HeaderSize))
		}},
		{"CURRENT and manifest removed", func(t *testing.T, m *vfs.MemFS, man string) {
			for _, n := range []string{CurrentFile, man} {
				if err := m.Remove(filepath.Join(dir, n)); err != nil {
					t.Fatal(err)
				}
			}
		}},
	} {
		for mode, o := range map[string]Options{"strict": {}, "fallback": {Fallback: true}, "read-only": {ReadOnly: true}} {
			t.Run(damage.name+"/"+mode, func(t *testing.T) {
				m, man := saved(t)
				damage.do(t, m, man)
				o.FS = m
				e, err := Open(dir, o)
				if err == nil {
					e.Close()
					t.Fatalf("opened with %d snapshots", len(e.Snapshots()))
				}
				if !errors.Is(err, errs.ErrCorrupt) && !(o.ReadOnly && errors.Is(err, errs.ErrNotDB)) {
					t.Fatalf("error %v, want ErrCorrupt", err)
				}
				for _, s := range segs {
					if !slices.Contains(files(t, m), s) && !strings.Contains(damage.name, "one segment left") {
						t.Errorf("%s is gone: %v", s, files(t, m))
					}
				}
				if !slices.Contains(files(t, m), "000003.seg") {
					t.Errorf("000003.seg is gone: %v", files(t, m))
				}
			})
		}
	}
}

// A crash during a first save leaves one segment and a manifest with no
// snapshot, as a manifest of one snapshot cut back to its header does:
// the open starts empty and moves the segment aside, never deleting it;
// so do the opens after further crashed first saves, whose segments
// come after the ones moved aside.
func TestNoSnapshotBesideOneSegment(t *testing.T) {
	m, e := openMem(t, Options{})
	for crash := range 3 {
		commit(t, e, "a", fmt.Sprint(crash)) // segment crash+1
		man := manifest.FileName(e.manNum)
		e.Close()
		rewrite(t, m, man, cutTo(manifest.HeaderSize))
		e = open(t, m, Options{})
		if len(e.Snapshots()) != 0 {
			t.Fatalf("crash %d: snapshots %v", crash, e.Snapshots())
		}
		seg := segment.FileName(uint64(crash + 1))
		if rep := e.Report(); !slices.Contains(rep.Broken, seg+BrokenSuffix) || slices.ContainsFunc(rep.Removed, func(n string) bool { _, ok := segment.ParseFileName(n); return ok }) {
			t.Fatalf("crash %d: report %+v", crash, rep)
		}
		if !slices.Contains(files(t, m), seg+BrokenSuffix) {
			t.Fatalf("crash %d: files %v", crash, files(t, m))
		}
	}
	commit(t, e, "a", "2")
	e.Close()
	e = open(t, m, Options{})
	defer e.Close()
	if got := contents(t, e, 0); got["a"] != "2" {
		t.Fatalf("after a save: %v", got)
	}
}

// Crashed first saves with opens between them that save nothing: each
// segment gets a number of its own, never one moved aside, and each
// open after a crash starts empty.
func TestFirstSavesCrashWithOpensBetween(t *testing.T) {
	m, e := openMem(t, Options{})
	for crash := range 3 {
		commit(t, e, "a", fmt.Sprint(crash))
		man := manifest.FileName(e.manNum)
		e.Close()
		rewrite(t, m, man, cutTo(manifest.HeaderSize))
		e = open(t, m, Options{}) // moves the segment aside
		e.Close()
		e = open(t, m, Options{}) // an open that saves nothing
		if len(e.Snapshots()) != 0 {
			t.Fatalf("crash %d: snapshots %v", crash, e.Snapshots())
		}
	}
	commit(t, e, "a", "saved")
	e.Close()
	e = open(t, m, Options{})
	defer e.Close()
	if got := contents(t, e, 0); got["a"] != "saved" {
		t.Fatalf("%v", got)
	}
	for i := 1; i <= 3; i++ {
		if !slices.Contains(files(t, m), segment.FileName(uint64(i))+BrokenSuffix) {
			t.Fatalf("files %v", files(t, m))
		}
	}
}
