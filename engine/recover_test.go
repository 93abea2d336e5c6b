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

func TestDamagedSegment(t *testing.T) {
	m, e := openMem(t, Options{})
	commit(t, e, "a", "1", "b", "1")
	commit(t, e, "a", "2")
	a, _ := e.Lookup(0, "a")
	e.Close()
	seg := segment.FileName(a.Value.Segment)
	// A flipped byte in the value: strict open succeeds (the index is
	// intact) and reading the value fails; fallback finds it at open.
	c := m.CrashClone(vfs.CrashOptions{})
	rewrite(t, c, seg, flipAt(segment.HeaderSize+2))
	e = open(t, c, Options{})
	if _, err := e.Read(a.Value); !errors.Is(err, errs.ErrCorrupt) || !strings.Contains(err.Error(), seg) {
		t.Fatalf("read of a damaged value: %v", err)
	}
	e.Close()
	e = open(t, c, Options{Fallback: true})
	rep := e.Report()
	if !rep.FellBack || rep.Damaged != 2 || rep.UsedID != 1 || !errors.Is(rep.Damage, errs.ErrCorrupt) {
		t.Fatalf("fallback report %+v", rep)
	}
	if want := []string{seg + BrokenSuffix, "MANIFEST-000002" + BrokenSuffix}; !slices.Equal(rep.Broken, want) {
		t.Fatalf("broken %v, want %v", rep.Broken, want)
	}
	if got := contents(t, e, 0); got["a"] != "1" || got["b"] != "1" {
		t.Fatalf("fallback contents %v", got)
	}
	for _, b := range rep.Broken {
		if !slices.Contains(files(t, c), b) {
			t.Fatalf("%s not kept aside: %v", b, files(t, c))
		}
	}
	commit(t, e, "a", "3")
	e.Close()
	// A damaged trailer fails a strict open, naming the file, and
	// changes nothing: the same damage is found again.
	c = m.CrashClone(vfs.CrashOptions{})
	rewrite(t, c, seg, flipAt(-20))
	for range 2 {
		if _, err := Open(dir, Options{FS: c}); !errors.Is(err, errs.ErrCorrupt) || !strings.Contains(err.Error(), seg) {
			t.Fatalf("strict open of a damaged segment: %v", err)
		}
	}
}

// Fallback never deletes a file a newer snapshot uses: snapshot 3 uses
// segment 2 (state a, damaged) and segment 3 (state b, intact, only
// there); falling back to snapshot 1 moves both aside.
func TestFallbackNeverDeletes(t *testing.T) {
	m, e := openMem(t, Options{})
	commit(t, e, "a", "1", "b", "1")
	commit(t, e, "a", "2")
	commit(t, e, "b", "3")
	e.Close()
	rewrite(t, m, "000002.seg", flipAt(segment.HeaderSize+2))
	e = open(t, m, Options{Fallback: true})
	defer e.Close()
	rep := e.Report()
	if rep.UsedID != 1 || rep.Damaged != 3 {
		t.Fatalf("report %+v", rep)
	}
	for _, f := range []string{"000002.seg.broken", "000003.seg.broken"} {
		if !slices.Contains(rep.Broken, f) || !slices.Contains(files(t, m), f) {
			t.Fatalf("%s not moved aside: broken %v, files %v", f, rep.Broken, files(t, m))
		}
	}
	for _, r := range rep.Removed {
		if strings.HasSuffix(r, ".seg") {
			t.Fatalf("fallback deleted %s", r)
		}
	}
	// The intact value only snapshot 3 had is still there to recover.
	c := vfs.NewMem()
	c.MkdirAll(dir)
	rewrite(t, m, "000003.seg.broken", func(b []byte) []byte {
		f, _ := c.Create(filepath.Join(dir, "000003.seg"))
		f.Write(b)
		f.Close()
		return b
	})
	f, _ := c.Open(filepath.Join(dir, "000003.seg"))
	size, _ := f.Size()
	r, err := segment.Open(f, size, "000003.seg")
	if err != nil {
		t.Fatal(err)
	}
	if en, ok := r.Find("b"); !ok {
		t.Fatal("b is not in the segment moved aside")
	} else if raw, err := r.Read(en); err != nil || string(raw) != "3" {
		t.Fatalf("b in the segment moved aside: %q %v", raw, err)
	}
}

// One flipped bit in CURRENT: strict opens fail naming it; fallback
// finds the manifest by listing the directory and says so.
func TestDamagedCurrent(t *testing.T) {
	m := savedA(t, "1", "2")
	for bit := range 8 * len(manifest.EncodeCurrent(2)) {
		c := m.CrashClone(vfs.CrashOptions{})
		rewrite(t, c, CurrentFile, func(b []byte) []byte {
			if bit/8 < len(b) {
				b[bit/8] ^= 1 << (bit % 8)
			}
			return b
		})
		if _, err := Open(dir, Options{FS: c}); !errors.Is(err, errs.ErrCorrupt) || !strings.Contains(err.Error(), CurrentFile) {
			t.Fatalf("bit %d: strict open: %v", bit, err)
		}
		e := open(t, c, Options{Fallback: true})
		rep := e.Report()
		if !rep.FellBack || !errors.Is(rep.Damage, errs.ErrCorrupt) || !slices.Contains(rep.Broken, "CURRENT.broken") {
			t.Fatalf("bit %d: report %+v", bit, rep)
		}
		if got := contents(t, e, 0)["a"]; got != "2" {
			t.Fatalf("bit %d: a=%q", bit, got)
		}
		commit(t, e, "a", "3")
		e.Close()
		e = open(t, c, Options{})
		if got := contents(t, e, 0)["a"]; got != "3" || e.Report().FellBack {
			t.Fatalf("bit %d: after fallback and a save: a=%q", bit, got)
		}
		e.Close()
	}
}

// A manifest damaged in its middle: strict opens fail; fallback uses the
// records before the damage.
func TestDamagedManifestMiddle(t *testing.T) {
	m, e := openMem(t, Options{})
	for i := range 4 {
		commit(t, e, "a", fmt.Sprint(i))
	}
	man := manifest.FileName(e.manNum)
	e.Close()
	f, _ := m.Open(filepath.Join(dir, man))
	size, _ := f.Size()
	data, _ := vfs.ReadAll(f, size)
	f.Close()
	log, err := manifest.ReplayBytes(data, man)
	if err != nil {
		t.Fatal(err)
	}
	rewrite(t, m, man, flipAt(log.Offsets[2]+20))
	if _, err := Open(dir, Options{FS: m}); !errors.Is(err, errs.ErrCorrupt) || !strings.Contains(err.Error(), man) {
		t.Fatalf("strict open: %v", err)
	}
	e = open(t, m, Options{Fallback: true})
	defer e.Close()
	if rep := e.Report(); !rep.FellBack || rep.UsedID != 2 {
		t.Fatalf("report %+v", rep)
	}
	if got := contents(t, e, 0)["a"]; got != "1" {
		t.Fatalf("a=%q", got)
	}
}

// Nothing is intact: the error says fallback cannot help.
func TestNothingIntact(t *testing.T) {
	m := savedA(t, "1")
	rewrite(t, m, "000001.seg", flipAt(segment.HeaderSize+2))
	_, err := Open(dir, Options{FS: m, Fallback: true})
	var ce *errs.CorruptError
	if !errors.As(err, &ce) || ce.Hint != errs.HintNoFallback || !strings.Contains(err.Error(), "backup") {
		t.Fatalf("open: %v", err)
	}
}

// maps writes map state name: a base of parts, or one delta.
func mapWrite(name string, delta bool, entries int64, parts ...string) Write {
	w := Write{Name: name, Kind: MapState, Delta: delta, Entries: entries, Schema: 2}
	for _, p := range parts {
		w.Parts = append(w.Parts, bytesTo(p))
	}
	return w
}

// A map is a base and a chain of deltas; each retained snapshot keeps
// the chain it had, GC keeps what they use, compaction carries chains.
func TestMapChains(t *testing.T) {
	m, e := openMem(t, Options{Retain: 3, Level: segment.LevelNone})
	mustCommit := func(ws ...Write) Snapshot {
		s, err := e.Commit(ws, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	mustCommit(mapWrite("m", false, 2, "base0", "base1"))
	mustCommit(mapWrite("m", true, 3, "d2"))
	mustCommit(values("v", "x")...)
	mustCommit(mapWrite("m", true, 4, "d4"))
	want := map[uint64]string{2: "base0|base1|d2", 3: "base0|base1|d2", 4: "base0|base1|d2|d4"}
	check := func(when string) {
		t.Helper()
		for id, w := range want {
			if got := contents(t, e, id)["m"]; got != w {
				t.Fatalf("%s: snapshot %d m=%q, want %q", when, id, got, w)
			}
		}
		r, _ := e.Lookup(0, "m")
		if r.Kind != MapState || r.Entries != 4 || r.Since != 4 || r.Schema != 2 || len(r.Base) != 2 || len(r.Deltas) != 2 {
			t.Fatalf("%s: ref %+v", when, r)
		}
	}
	check("written")
	e.Close()
	e = open(t, m, Options{Retain: 3, Level: segment.LevelNone})
	check("reopened")
	// A new base: the chain restarts; older snapshots keep theirs.
	mustCommit(mapWrite("m", false, 1, "new"))
	delete(want, 2)
	want[5] = "new"
	check5 := func() {
		if got := contents(t, e, 5)["m"]; got != "new" {
			t.Fatalf("m=%q", got)
		}
		for id := uint64(3); id <= 4; id++ {
			if got := contents(t, e, id)["m"]; got != want[id] {
				t.Fatalf("snapshot %d m=%q", id, got)
			}
		}
	}
	check5()
	used := segmentsInUse(t, e)
	for id := range used {
		if !slices.Contains(files(t, m), segment.FileName(id)) {
			t.Fatalf("segment %d in use is gone", id)
		}
	}
	// Force a compaction: every live value moves, chains and all.
	e.compact = true
	mustCommit(values("v", "y")...)
	if got := contents(t, e, 0)["m"]; got != "new" {
		t.Fatalf("compacted m=%q", got)
	}
	e.Close()
	e = open(t, m, Options{Retain: 3})
	defer e.Close()
	if got := contents(t, e, 4)["m"]; got != "base0|base1|d2|d4" {
		t.Fatalf("after compaction, snapshot 4 m=%q", got)
	}
	if p := e.Verify(nil); len(p) > 0 {
		t.Fatal(p)
	}
}

// Compaction of a map whose chain is longer than its base carries both.
func TestCompactionCarriesChains(t *testing.T) {
	_, e := openMem(t, Options{Retain: 1})
	defer e.Close()
	ws := []Write{mapWrite("m", false, 1, "b")}
	if _, err := e.Commit(ws, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := e.Commit([]Write{mapWrite("m", true, 1, fmt.Sprint("d", i))}, nil); err != nil {
			t.Fatal(err)
		}
	}
	e.compact = true
	if _, err := e.Commit(values("x", "1"), nil); err != nil {
		t.Fatal(err)
	}
	r, _ := e.Lookup(0, "m")
	if got := read(t, e, r); got != "b|d0|d1|d2" || len(r.Deltas) != 3 {
		t.Fatalf("m=%q (%d deltas)", got, len(r.Deltas))
	}
	seg := r.Base[0].Segment
	locs(&r, func(l *Loc) {
		if l.Segment != seg {
			t.Fatalf("value %q left in segment %d, not %d", l.Name, l.Segment, seg)
		}
	})
}
