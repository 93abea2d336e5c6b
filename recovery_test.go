package instadump

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/instadump/instadump/manifest"
)

// A last commit record written whole and damaged since: its snapshot
// may have been acknowledged, so a default Open fails, naming the
// manifest and the record's offset and saying what to do. WithFallback
// loads the snapshot before it, says so in Recovery as any fallback, and
// keeps the segment only that record names aside, never deleting it.
func TestDamagedLastRecordKeepsSegment(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	newStateT(t, db, "a", 1)
	saveT(t, db)
	newStateT(t, db, "b", 2)
	saveT(t, db) // segment 2 holds b, only snapshot 2 names it
	db.Close()
	mans, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	if len(mans) != 1 {
		t.Fatalf("manifests %v", mans)
	}
	data, _ := os.ReadFile(mans[0])
	log, err := manifest.ReplayBytes(data, mans[0])
	if err != nil {
		t.Fatal(err)
	}
	data[log.Offsets[len(log.Offsets)-1]+manifest.FrameHeaderSize+3] ^= 0x04
	os.WriteFile(mans[0], data, 0o644)

	if db, err := Open(dir); err == nil {
		db.Close()
		t.Fatal("a default Open loaded the snapshot before a damaged last record")
	} else {
		var ce *CorruptError
		if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) || ce.File != mans[0] || ce.Offset != log.Offsets[len(log.Offsets)-1] ||
			!strings.Contains(err.Error(), "backup") || !strings.Contains(err.Error(), "WithFallback") {
			t.Fatalf("default Open: %v", err)
		}
	}
	db = openT(t, dir, WithFallback())
	defer db.Close()
	rec := db.Recovery()
	var ce *CorruptError
	if !errors.As(rec.DamagedTail, &ce) || ce.File != mans[0] || rec.TornTail != nil || !rec.FellBack || rec.UsedID != 1 {
		t.Fatalf("recovery %+v", rec)
	}
	if slices.Contains(rec.Removed, "000002.seg") || !slices.Contains(rec.Broken, "000002.seg.broken") {
		t.Fatalf("recovery %+v", rec)
	}
	if _, err := os.Stat(filepath.Join(dir, "000002.seg.broken")); err != nil {
		t.Fatal(err)
	}
	if a := newStateT(t, db, "a", 0); a.Get() != 1 {
		t.Fatalf("a=%d", a.Get())
	}
}
