package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/replica/replicatest"
	"github.com/instadump/instadump/segment"
)

// A reopened DB resumes where the store is: nothing it holds is uploaded
// again.
func TestResumeUploadsNothingTwice(t *testing.T) {
	m := vfs.NewMem()
	mem := replicatest.NewMemStore()
	st := replicatest.NewFaultStore(mem)
	e := openRepl(t, m, st, Options{})
	commit(t, e, "a", "1", "b", "2")
	commit(t, e, "a", "3")
	waitShipped(t, e, 2)
	e.Close()
	puts := st.Count(replicatest.OpUpload)

	e = openRepl(t, m, st, Options{})
	defer e.Close()
	waitShipped(t, e, 2)
	if n := st.Count(replicatest.OpUpload); n != puts {
		t.Fatalf("the reopened DB uploaded %d objects the store holds", n-puts)
	}
	commit(t, e, "b", "4")
	waitShipped(t, e, 3)
	// One segment and one commit object.
	if n := st.Count(replicatest.OpUpload) - puts; n != 2 {
		t.Fatalf("snapshot 3 took %d uploads, want 2", n)
	}
	if s, _ := e.ReplicaStatus(); s.Shipped != 3 || s.Current != 3 || s.Behind != 0 || s.Pending != 0 || s.Err != nil || s.Stopped != nil {
		t.Fatalf("status: %+v", s)
	}
}

// The store keeps its own number of snapshots, and deletes everything
// else; older ones restore, and one it lacks is errs.ErrNoSnapshot.
func TestStoreRetention(t *testing.T) {
	m := vfs.NewMem()
	st := replicatest.NewMemStore()
	e := openRepl(t, m, st, Options{Retain: 2, Replica: replOpts(st, 4)})
	defer e.Close()
	want := map[uint64]map[string]string{}
	for i := range 30 {
		s := commit(t, e, fmt.Sprint("s", i%4), fmt.Sprint(i))
		want[s.ID] = contents(t, e, s.ID)
		waitShipped(t, e, s.ID)
	}
	snaps, err := ReplicaSnapshots(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) < 4 || len(snaps) > 4+fullEvery || snaps[len(snaps)-1].ID != 30 {
		t.Fatalf("the store holds %d snapshots", len(snaps))
	}
	noOrphans(t, st)
	for _, s := range snaps {
		r, _, _ := restoreTo(t, st, RestoreOptions{ID: s.ID})
		if got := contents(t, r, 0); !maps.Equal(got, want[s.ID]) {
			t.Fatalf("snapshot %d restored as %v", s.ID, got)
		}
		r.Close()
	}
	_, err = Restore(context.Background(), st, "x", RestoreOptions{ID: 1, FS: vfs.NewMem()})
	if !errors.Is(err, errs.ErrNoSnapshot) || !strings.Contains(err.Error(), "no snapshot 1") {
		t.Fatalf("restore of a deleted snapshot: %v", err)
	}
	// Before: the newest saved at or before a time.
	r, _, snap := restoreTo(t, st, RestoreOptions{Before: snaps[len(snaps)-2].Time})
	r.Close()
	if snap.ID != snaps[len(snaps)-2].ID {
		t.Fatalf("restore before %v gave snapshot %d", snaps[len(snaps)-2].Time, snap.ID)
	}
	_, err = Restore(context.Background(), st, "x", RestoreOptions{Before: snaps[0].Time.Add(-time.Nanosecond), FS: vfs.NewMem()})
	if !errors.Is(err, errs.ErrNoSnapshot) {
		t.Fatalf("restore before every snapshot: %v", err)
	}
}

// What a commit object records is what the engine's records say: a
// restored directory's manifest holds the snapshot in one full record.
func TestRestoredManifest(t *testing.T) {
	st := replicatest.NewMemStore()
	e := openRepl(t, vfs.NewMem(), st, Options{})
	defer e.Close()
	commit(t, e, "a", "1", "b", "2")
	s := commit(t, e, "a", "3")
	waitShipped(t, e, s.ID)
	m := vfs.NewMem()
	if _, err := Restore(context.Background(), st, dir, RestoreOptions{FS: m}); err != nil {
		t.Fatal(err)
	}
	names := files(t, m)
	if !slices.Equal(names, []string{segment.FileName(1), segment.FileName(2), CurrentFile, LineageFile, manifest.FileName(1)}) {
		t.Fatalf("restored directory: %v", names)
	}
	log, err := manifest.ReplayBytes(readFile(t, m, manifest.FileName(1)), "m")
	if err != nil || len(log.Records) != 1 || log.Records[0].Kind != manifest.Full || log.Records[0].Retained != 2 || log.Records[0].NextSegment != 3 {
		t.Fatalf("restored manifest: %+v %v", log, err)
	}
	r, err := Open(dir, Options{FS: m, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, want := contents(t, r, 0), contents(t, e, 0); !maps.Equal(got, want) {
		t.Fatalf("restored %v, want %v", got, want)
	}
}
