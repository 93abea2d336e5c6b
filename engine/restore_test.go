package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"syscall"
	"testing"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/replica"
	"github.com/instadump/instadump/replica/replicatest"
)

// shippedStore returns a store holding snapshots 1 to 3 of a DB (its
// contents by ID), every commit object full or not.
func shippedStore(t *testing.T) (*replicatest.MemStore, map[uint64]map[string]string) {
	t.Helper()
	st := replicatest.NewMemStore()
	e := openRepl(t, vfs.NewMem(), st, Options{Retain: 3})
	defer e.Close()
	want := map[uint64]map[string]string{}
	for i := range 3 {
		s := commit(t, e, "a", strings.Repeat(fmt.Sprint(i), 200), fmt.Sprint("b", i), "x")
		want[s.ID] = contents(t, e, s.ID)
		waitShipped(t, e, s.ID)
	}
	return st, want
}

func getObj(t *testing.T, st replica.Store, key string) []byte {
	t.Helper()
	rc, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var b bytes.Buffer
	b.ReadFrom(rc)
	return b.Bytes()
}

func putObj(t *testing.T, st replica.Store, key string, b []byte) {
	t.Helper()
	if err := st.Put(context.Background(), key, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

// keyOf returns the store's key of the given kind and number.
func keyOf(t *testing.T, st replica.Store, kind string, num uint64) string {
	t.Helper()
	objs, _ := st.List(context.Background(), "")
	for _, o := range objs {
		if k, _, n, _, ok := replica.ParseKey(o.Key); ok && k == kind && n == num {
			return o.Key
		}
	}
	t.Fatalf("no %s %d in the store", kind, num)
	return ""
}

// A flipped bit anywhere in what Restore fetches is found before
// anything is written; a missing object makes a snapshot incomplete, and
// the newest complete one is restored instead.
func TestRestoreVerifies(t *testing.T) {
	base, want := shippedStore(t)
	for _, tc := range []struct {
		name   string
		kind   string
		num    uint64
		offset int // from the end when negative
	}{
		{"segment header", "seg", 3, 3},
		{"segment value", "seg", 3, 50},
		{"segment index", "seg", 3, -60},
		{"segment trailer", "seg", 3, -10},
		{"commit object header", "snap", 3, 20},
		{"commit object record", "snap", 3, -20},
		{"commit object checksum", "snap", 3, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := replicatest.NewMemStore()
			for _, o := range mustList(t, base) {
				putObj(t, st, o.Key, getObj(t, base, o.Key))
			}
			key := keyOf(t, st, tc.kind, tc.num)
			b := getObj(t, st, key)
			off := tc.offset
			if off < 0 {
				off += len(b)
			}
			b[off] ^= 0x08
			putObj(t, st, key, b)
			m := vfs.NewMem()
			_, err := Restore(context.Background(), st, dir, RestoreOptions{FS: m, ID: 3})
			if !errors.Is(err, errs.ErrCorrupt) || !strings.Contains(err.Error(), key) {
				t.Fatalf("restore of a damaged snapshot: %v", err)
			}
			// The advice is for a replica: WithFallback is for a local
			// directory.
			if msg := err.Error(); strings.Contains(msg, "WithFallback") || !strings.Contains(msg, "RestoreAt") {
				t.Fatalf("restore of a damaged snapshot gives advice for a local DB: %v", err)
			}
			if names, _ := m.List("."); len(names) != 0 {
				t.Fatalf("a failed restore left %v", names)
			}
			_, problems := VerifyReplica(context.Background(), st, nil)
			if len(problems) == 0 || !errors.Is(problems[0], errs.ErrCorrupt) || strings.Contains(problems[0].Error(), "WithFallback") {
				t.Fatalf("verify: %v", problems)
			}
		})
	}
	// A missing segment: the snapshot is incomplete.
	st := replicatest.NewMemStore()
	for _, o := range mustList(t, base) {
		putObj(t, st, o.Key, getObj(t, base, o.Key))
	}
	st.Delete(context.Background(), keyOf(t, st, "seg", 3))
	r, _, snap := restoreTo(t, st, RestoreOptions{})
	if snap.ID != 2 || !maps.Equal(contents(t, r, 0), want[2]) {
		t.Fatalf("with snapshot 3 incomplete, restored %d", snap.ID)
	}
	r.Close()
	if _, err := Restore(context.Background(), st, dir, RestoreOptions{FS: vfs.NewMem(), ID: 3}); !errors.Is(err, errs.ErrMissing) || strings.Contains(err.Error(), "WithFallback") {
		t.Fatalf("restore of an incomplete snapshot: %v", err)
	}
	snaps, problems := VerifyReplica(context.Background(), st, nil)
	if len(snaps) != 3 || snaps[2].Problem == nil || snaps[1].Problem != nil || len(problems) != 1 {
		t.Fatalf("verify: %+v %v", snaps, problems)
	}
}

func mustList(t *testing.T, st replica.Store) []replica.Object {
	t.Helper()
	objs, err := st.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestRestoreTargets(t *testing.T) {
	st, _ := shippedStore(t)
	m := vfs.NewMem()
	m.MkdirAll(dir)
	if _, err := Restore(context.Background(), st, dir, RestoreOptions{FS: m}); err != nil {
		t.Fatalf("restore into an empty directory: %v", err)
	}
	if _, err := Restore(context.Background(), st, dir, RestoreOptions{FS: m}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore into a DB directory: %v", err)
	}
	if _, err := Restore(context.Background(), replicatest.NewMemStore(), "x", RestoreOptions{FS: m}); !errors.Is(err, errs.ErrNoSnapshot) || !strings.Contains(err.Error(), "no replicated DB") {
		t.Fatalf("restore from an empty store: %v", err)
	}
	if _, err := Restore(context.Background(), st, "x", RestoreOptions{FS: m, ID: 9}); !errors.Is(err, errs.ErrNoSnapshot) || !strings.Contains(err.Error(), "1, 2, 3") {
		t.Fatalf("restore of a snapshot the store lacks: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Restore(ctx, st, "y", RestoreOptions{FS: m}); !errors.Is(err, context.Canceled) {
		t.Fatalf("restore with a cancelled context: %v", err)
	}
	if names, _ := m.List("."); len(names) != 1 {
		t.Fatalf("failed restores left %v", names)
	}
}

// A store that fails now and then (a server answering 503, a connection
// cut mid-download) still restores.
func TestRestoreRetries(t *testing.T) {
	st, want := shippedStore(t)
	fs := replicatest.NewFaultStore(st)
	fs.Inject(replicatest.Fault{Ops: replicatest.OpGet, N: 2, Err: replicatest.ErrTransient, Mode: replicatest.MidBody, CutAt: 30})
	fs.Inject(replicatest.Fault{Ops: replicatest.OpList, N: 1, Err: replicatest.ErrTransient})
	fs.Inject(replicatest.Fault{Ops: replicatest.OpGet, N: 5, Err: replicatest.ErrTransient})
	r, _, snap := restoreTo(t, fs, RestoreOptions{})
	defer r.Close()
	if !maps.Equal(contents(t, r, 0), want[snap.ID]) || fs.Injected(replicatest.OpAll) != 3 {
		t.Fatalf("restored %d after %d faults", snap.ID, fs.Injected(replicatest.OpAll))
	}
}

// A restore into an existing empty directory that fails at any step,
// moving files in included, leaves the directory empty, so that the
// next restore into it works.
func TestRestoreIntoFailsCleanly(t *testing.T) {
	st, _ := shippedStore(t)
	for n := int64(1); ; n++ {
		m := vfs.NewMem()
		m.MkdirAll(dir)
		inj := &vfs.Nth{Kinds: vfs.OpRename | vfs.OpRemove | vfs.OpSyncDir | vfs.OpSync, N: n, Err: syscall.EIO}
		_, err := Restore(context.Background(), st, dir, RestoreOptions{FS: vfs.WithErrors(m, inj)})
		if inj.Fired() == 0 {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		if err == nil {
			continue
		}
		if names, _ := m.List(dir); len(names) > 0 {
			t.Fatalf("failing operation %d (%v): left %v", n, err, names)
		}
		if _, err := Restore(context.Background(), st, dir, RestoreOptions{FS: m}); err != nil {
			t.Fatalf("failing operation %d: the next restore: %v", n, err)
		}
	}
}
