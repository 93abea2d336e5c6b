package engine

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/manifest"
)

// A complete last record whose checksum fails is damage, not a torn
// write: recovery loads the snapshot before it (it cannot read the
// record) but says so, and moves aside the segments only that record
// may name and the manifest holding it, never deleting them.
func TestDamagedLastRecord(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{})
	commit(t, e, "a", "1")
	commit(t, e, "b", "2") // only snapshot 2 uses segment 2
	man := manifest.FileName(e.manNum)
	e.Close()
	log := replayed(t, m, man)
	rewrite(t, m, man, flipAt(log.Offsets[len(log.Offsets)-1]+manifest.FrameHeaderSize+2))
	for _, o := range []Options{{ReadOnly: true}, {}} {
		e = open(t, m, o)
		rep := e.Report()
		if got := contents(t, e, 0); got["a"] != "1" || got["b"] != "" {
			t.Fatalf("read-only %v: contents %v", o.ReadOnly, got)
		}
		if rep.TornTail != nil {
			t.Errorf("read-only %v: a damaged record reported as a torn tail: %v", o.ReadOnly, rep.TornTail)
		}
		var ce *errs.CorruptError
		if !errors.As(rep.DamagedTail, &ce) || ce.File != filepath.Join(dir, man) || ce.Offset != log.Offsets[1] || ce.Hint == errs.HintTornTail {
			t.Errorf("read-only %v: damaged tail %v", o.ReadOnly, rep.DamagedTail)
		}
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
	if rep := e.Report(); rep.DamagedTail != nil || len(rep.Broken) > 0 || len(rep.Removed) > 0 {
		t.Fatalf("reopen: %+v", rep)
	}
}
