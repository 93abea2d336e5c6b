package fuzz

import (
	"strings"
	"testing"

	"github.com/instadump/instadump/engine"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/segment"
)

// checkModel looks at every retained snapshot, not only the current one:
// a segment that only an older retained snapshot needs, gone, is caught.
func TestCheckModelSeesRetainedSnapshots(t *testing.T) {
	mem := vfs.NewMem()
	w := &env{fs: mem, opts: engine.Options{Retain: 3}, m: newModel()}
	if err := w.open(); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1", "2", "3"} {
		if err := w.commit(map[string]string{"a": v}); err != nil {
			t.Fatal(err)
		}
	}
	first, _ := w.e.Lookup(1, "a")
	w.e.Close()
	if err := mem.Remove(dbDir + "/" + segment.FileName(first.Value.Segment)); err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(dbDir, engine.Options{FS: mem, Retain: 3})
	if err != nil {
		t.Fatal(err) // the current snapshot is intact: Open does not look further
	}
	defer e.Close()
	if err := checkModel(e, w.m); err == nil || !strings.Contains(err.Error(), "retained snapshot 1") {
		t.Fatalf("checkModel missed the damage to retained snapshot 1: %v", err)
	}
}
