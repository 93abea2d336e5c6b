package engine

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/segment"
)

// A directory where a segment should be is damage to that segment:
// ErrCorrupt naming the file, so that strict opens fail as for any
// damaged segment and fallback (read-only or not) gets past it.
func TestNonRegularSegment(t *testing.T) {
	m := vfs.NewMem()
	e := open(t, m, Options{})
	commit(t, e, "a", "1")
	commit(t, e, "a", "2")
	e.Close()
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
	e = open(t, m, Options{ReadOnly: true, Fallback: true})
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
