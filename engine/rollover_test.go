package engine

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

// withSuffix lists the files of fsys's DB directory ending in suffix.
func withSuffix(t *testing.T, fsys FS, suffix string) []string {
	t.Helper()
	var out []string
	for _, f := range files(t, fsys) {
		if strings.HasSuffix(f, suffix) {
			out = append(out, f)
		}
	}
	return out
}

// After a fallback open, the damaged manifest is moved aside once; later
// rollovers of the healthy one remove the old manifest as usual.
func TestRolloverAfterFallback(t *testing.T) {
	m, e := openMem(t, Options{})
	commit(t, e, "a", "1", "b", "1")
	commit(t, e, "a", "2")
	e.Close()
	rewrite(t, m, "000002.seg", flipAt(segment.HeaderSize+2))
	e = open(t, m, Options{Fallback: true})
	defer e.Close()
	broken := withSuffix(t, m, BrokenSuffix)
	for i := range 3 {
		commit(t, e, "a", fmt.Sprint(10+i))
		e.commitMu.Lock()
		err := e.rollover(e.manNum + 1)
		e.commitMu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := withSuffix(t, m, BrokenSuffix); !slices.Equal(got, broken) {
		t.Fatalf("files moved aside after the open: %v, then %v", broken, got)
	}
	if got := e.Report().Broken; len(got) != len(broken) {
		t.Fatalf("report lists %v moved aside, the open moved %v", got, broken)
	}
	var mans []string
	for _, f := range files(t, m) {
		if _, ok := manifest.ParseFileName(f); ok {
			mans = append(mans, f)
		}
	}
	if len(mans) != 1 || mans[0] != manifest.FileName(e.manNum) {
		t.Fatalf("manifests %v, want only %s", mans, manifest.FileName(e.manNum))
	}
}

// Fallback from a damaged CURRENT keeps the intact manifest it recovers
// from (not moved aside as broken); only CURRENT goes aside, and CURRENT
// is rewritten, durably, to name the manifest holding those snapshots.
func TestDamagedCurrentKeepsManifest(t *testing.T) {
	m := savedA(t, "1", "2")
	rewrite(t, m, CurrentFile, flipAt(3))
	e := open(t, m, Options{Fallback: true})
	rep := e.Report()
	if !rep.FellBack || !slices.Equal(rep.Broken, []string{CurrentFile + BrokenSuffix}) {
		t.Fatalf("report %+v", rep)
	}
	if got := withSuffix(t, m, BrokenSuffix); !slices.Equal(got, []string{CurrentFile + BrokenSuffix}) {
		t.Fatalf("moved aside: %v", got)
	}
	e.Close()
	// What a power cut now leaves opens strictly, on snapshot 2.
	c := m.CrashClone(vfs.CrashOptions{})
	e = open(t, c, Options{})
	defer e.Close()
	if got := contents(t, e, 0)["a"]; got != "2" {
		t.Fatalf("a=%q", got)
	}
}
