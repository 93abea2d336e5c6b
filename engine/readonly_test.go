package engine

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

// The tools see the retention the writer used, not a default.
func TestReadersTakeRetentionFromTheManifest(t *testing.T) {
	m, e := openMem(t, Options{Retain: 10})
	for i := range 12 {
		commit(t, e, "a", fmt.Sprint(i), fmt.Sprint("s", i), "x")
	}
	e.Close()
	ro := open(t, m, Options{ReadOnly: true})
	defer ro.Close()
	if snaps := ro.Snapshots(); len(snaps) != 10 || snaps[0].ID != 3 {
		t.Fatalf("read-only open sees %d snapshots from %d", len(snaps), snaps[0].ID)
	}
	if got := contents(t, ro, 3)["a"]; got != "2" {
		t.Fatalf("snapshot 3: a=%q", got)
	}
	live := ro.LiveBytes()
	for _, n := range files(t, m) {
		if id, ok := segment.ParseFileName(n); ok && live[id] == 0 {
			t.Fatalf("segment %s in use but not live", n)
		}
	}
	if p := ro.Verify(nil); len(p) != 0 {
		t.Fatalf("verify: %v", p)
	}
}

// A read-only open works while another engine keeps saving, rolling its
// manifest over and deleting segments.
func TestReadOnlyWhileSaving(t *testing.T) {
	m, e := openMem(t, Options{ManifestLimit: 1, Retain: 1})
	defer e.Close()
	commit(t, e, "a", "0")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i < 300; i++ {
			if _, err := e.Commit(values("a", fmt.Sprint(i)), nil); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for opened := 0; ; opened++ {
		select {
		case <-done:
			if opened == 0 {
				t.Fatal("no read-only open happened during the saves")
			}
			return
		default:
		}
		ro, err := Open(dir, Options{FS: m, ReadOnly: true})
		if err != nil {
			t.Fatalf("read-only open %d during saves: %v", opened, err)
		}
		if _, ok := ro.Current(); !ok {
			t.Fatal("read-only open found no snapshot")
		}
		if p := ro.Verify(nil); len(p) > 0 {
			t.Fatalf("verify during saves: %v", p)
		}
		ro.Close()
	}
}

// Reopening with a larger retention does not resurrect snapshots whose
// segments were deleted under the smaller one.
func TestRetentionGrowsAfterReopen(t *testing.T) {
	m, e := openMem(t, Options{Retain: 1})
	for i := 0; i < 5; i++ {
		commit(t, e, "a", fmt.Sprint(i), fmt.Sprintf("s%d", i), "x")
	}
	e.Close()
	for _, ro := range []bool{true, false} {
		e = open(t, m, Options{Retain: 3, ReadOnly: ro})
		if snaps := e.Snapshots(); len(snaps) != 1 || snaps[0].ID != 5 {
			t.Fatalf("read-only %v: snapshots %v", ro, snaps)
		}
		e.Close()
	}
	e = open(t, m, Options{Retain: 3})
	commit(t, e, "a", "x")
	commit(t, e, "a", "y")
	if snaps := e.Snapshots(); len(snaps) != 3 {
		t.Fatalf("%d snapshots retained after growing retention", len(snaps))
	}
	e.Close()
}

// Replaying a long manifest costs what its records hold, not a copy of
// every state for every record: 1000 states and 20k records.
func TestLongManifestReplaysInLittleMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("makes 20k commits")
	}
	m, e := openMem(t, Options{ManifestLimit: 1 << 40, Level: segment.LevelNone, Retain: 2})
	var kv []string
	for i := range 1000 {
		kv = append(kv, fmt.Sprintf("state-%04d", i), "x")
	}
	commit(t, e, kv...)
	for i := range 20_000 {
		commit(t, e, fmt.Sprintf("state-%04d", i%1000), fmt.Sprint(i))
	}
	e.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ro := open(t, m, Options{ReadOnly: true})
	log, _ := ro.Manifest()
	problems := ro.Verify(nil)
	runtime.ReadMemStats(&after)
	ro.Close()
	if len(log.Records) < 20_000 || len(problems) > 0 {
		t.Fatalf("%d records, problems %v", len(log.Records), problems)
	}
	got := after.TotalAlloc - before.TotalAlloc
	if got > 256<<20 {
		t.Fatalf("a read-only open and verify of %d records allocated %d MB", len(log.Records), got>>20)
	}
	t.Logf("a read-only open and verify of %d records of 1000 states allocated %.1f MB", len(log.Records), float64(got)/(1<<20))
}

func TestNotADB(t *testing.T) {
	m := vfs.NewMem()
	m.MkdirAll(dir)
	if _, err := Open(dir, Options{FS: m, ReadOnly: true}); !errors.Is(err, errs.ErrNotDB) {
		t.Fatalf("read-only open of an empty directory: %v", err)
	}
	if _, err := Open("nowhere", Options{FS: m, ReadOnly: true}); err == nil || errors.Is(err, errs.ErrCorrupt) {
		t.Fatalf("read-only open of a missing directory: %v", err)
	}
}

// countingFS counts the opens of CURRENT: one for each attempt of a
// recovery.
type countingFS struct {
	FS
	currents int
}

func (c *countingFS) Open(name string) (vfs.File, error) {
	if filepath.Base(name) == CurrentFile {
		c.currents++
	}
	return c.FS.Open(name)
}

// A read-only open starts over when a file it needs is missing, since the
// owner may have deleted it under the open; but when nothing in the
// directory changes between two attempts, the file is missing, not
// deleted under it, and the open fails at once instead of retrying for
// readOnlyRetry.
func TestReadOnlyMissingFileFailsFast(t *testing.T) {
	for _, missing := range []string{"000002.seg", "manifest", CurrentFile} {
		t.Run(missing, func(t *testing.T) {
			m, e := openMem(t, Options{})
			commit(t, e, "a", "1")
			commit(t, e, "b", "2")
			if missing == "manifest" {
				missing = manifest.FileName(e.manNum)
			}
			e.Close()
			if err := m.Remove(filepath.Join(dir, missing)); err != nil {
				t.Fatal(err)
			}
			c := &countingFS{FS: m}
			_, err := Open(dir, Options{FS: c, ReadOnly: true})
			if err == nil || missing != CurrentFile && !errors.Is(err, errs.ErrMissing) {
				t.Fatalf("without %s: %v", missing, err)
			}
			if c.currents > 4 {
				t.Fatalf("without %s: %d attempts, though nothing changed", missing, c.currents)
			}
		})
	}
}
