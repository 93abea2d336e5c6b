package fuzz

import (
	"fmt"
	"strings"
	"testing"

	"github.com/instadump/instadump/engine"
	"github.com/instadump/instadump/segment"
)

// checkModel looks at every retained snapshot, not only the current one:
// a segment that only an older retained snapshot needs, gone, is caught.
func TestCheckModelSeesRetainedSnapshots(t *testing.T) {
	mem, w := threeSaves(t, func(i int) map[string]string { return map[string]string{"a": fmt.Sprint(i)} })
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
