package instadump

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/instadump/instadump/internal/testdisk"
	"github.com/instadump/instadump/internal/versitygw"
	"github.com/instadump/instadump/replica"
	"github.com/instadump/instadump/replica/replicatest"
	"github.com/instadump/instadump/replica/s3"
	"github.com/instadump/instadump/segment"
)

// replicaHang bounds waits that must end: a test that reaches it has
// hung. It is not a timing threshold.
const replicaHang = 3 * time.Minute

func replWait(t *testing.T, db *DB, id uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), replicaHang)
	defer cancel()
	if err := db.WaitReplicated(ctx, id); err != nil {
		t.Fatal(err)
	}
}

func replDirStore(t *testing.T) replica.Store {
	t.Helper()
	st, err := replica.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func replS3Store(t *testing.T, cfg s3.Config) replica.Store {
	t.Helper()
	st, err := s3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

type replAccount struct {
	Owner   string
	Balance int64
	Tags    []string
	Opened  time.Time
}

// replStates are the states the replication tests save.
type replStates struct {
	counter  *State[int]
	greeting *State[string]
	accounts *State[map[string]replAccount]
	blob     *State[[]byte]
	scores   *Map[string, int]
}

func openReplStates(t *testing.T, db *DB) *replStates {
	t.Helper()
	return &replStates{
		counter:  newStateT(t, db, "counter", 0),
		greeting: newStateT(t, db, "greeting", "hello"),
		accounts: newStateT(t, db, "accounts", map[string]replAccount(nil)),
		blob:     newStateT(t, db, "blob", []byte(nil)),
		scores:   replMust(NewMap[string, int](db, "scores")),
	}
}

func replMust[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func (s *replStates) values() []any {
	scores := map[string]int{}
	for k, v := range s.scores.All() {
		scores[k] = v
	}
	return []any{s.counter.Get(), s.greeting.Get(), s.accounts.Get(), s.blob.Get(), scores}
}

func replRandom(t testing.TB, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// replSegmentBytes reads every segment file of dir.
func replSegmentBytes(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, n := range names {
		if _, ok := segment.ParseFileName(n.Name()); ok {
			b, err := os.ReadFile(filepath.Join(dir, n.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out[n.Name()] = b
		}
	}
	return out
}

// The machine is lost: its directory deleted, Restore on a fresh one
// gives back the last snapshot WaitReplicated confirmed, bit for bit.
func TestReplicaLossOfMachine(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) replica.Store
	}{
		{"directory", replDirStore},
		{"s3", func(t *testing.T) replica.Store { return replS3Store(t, versitygw.Config(t)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.store(t)
			dir := filepath.Join(t.TempDir(), "db")
			db := openT(t, dir, WithReplica(st), WithRetain(2))
			s := openReplStates(t, db)
			var confirmed Snapshot
			var want []any
			for i := range 4 {
				s.counter.Set(i + 1)
				s.accounts.Set(map[string]replAccount{fmt.Sprint("a", i): {Owner: "ada", Balance: int64(i) * 100, Tags: []string{"x"}, Opened: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC).Local()}})
				if i%2 == 0 {
					s.blob.Set(replRandom(t, 3<<20+i))
				}
				for k := range 1000 * (i + 1) { // a base, then deltas
					s.scores.Set(fmt.Sprint("k", k), k*i)
				}
				s.scores.Delete("k3")
				confirmed = saveT(t, db)
				replWait(t, db, confirmed.ID)
				want = s.values()
			}
			st1 := db.ReplicationStatus()
			if st1.Shipped != confirmed.ID || st1.Current != confirmed.ID || st1.Pending != 0 || st1.Behind != 0 || st1.Err != nil || st1.Store != st.String() {
				t.Fatalf("status: %+v", st1)
			}
			files := replSegmentBytes(t, dir)
			db.Close()
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}

			fresh := filepath.Join(t.TempDir(), "restored")
			snap, err := Restore(context.Background(), st, fresh)
			if err != nil {
				t.Fatal(err)
			}
			if snap.ID != confirmed.ID || !snap.Time.Equal(confirmed.Time) || snap.States != 5 {
				t.Fatalf("restored %+v, confirmed %+v", snap, confirmed)
			}
			for name, b := range replSegmentBytes(t, fresh) {
				if !bytes.Equal(b, files[name]) {
					t.Fatalf("restored %s differs from the lost machine's", name)
				}
			}
			db = openT(t, fresh)
			for i, got := range openReplStates(t, db).values() {
				if !reflect.DeepEqual(got, want[i]) {
					t.Fatalf("restored value %d differs from the one confirmed: %T", i, got)
				}
			}
			snaps, _ := db.Snapshots()
			if len(snaps) != 1 || snaps[0].ID != confirmed.ID {
				t.Fatalf("restored snapshots: %+v", snaps)
			}
		})
	}
}

// Older snapshots restore by ID and by time; a missing one is
// ErrNoSnapshot.
func TestReplicaPointInTime(t *testing.T) {
	st := replDirStore(t)
	db := openT(t, t.TempDir(), WithReplica(st), WithRetain(1), WithReplicaRetain(5))
	c := newStateT(t, db, "c", 0)
	var snaps []Snapshot
	for i := range 8 {
		c.Set(i + 1)
		snaps = append(snaps, saveT(t, db))
		replWait(t, db, snaps[i].ID)
	}
	restored := func(opts ...RestoreOption) (Snapshot, int) {
		dir := filepath.Join(t.TempDir(), "r")
		s, err := Restore(context.Background(), st, dir, opts...)
		if err != nil {
			t.Fatal(err)
		}
		r := openT(t, dir, WithReadOnly())
		return s, newStateT(t, r, "c", 0).Get()
	}
	if s, v := restored(RestoreAt(5)); s.ID != 5 || v != 5 {
		t.Fatalf("RestoreAt(5): snapshot %d holding %d", s.ID, v)
	}
	if s, v := restored(RestoreBefore(snaps[5].Time)); s.ID != 6 || v != 6 {
		t.Fatalf("RestoreBefore: snapshot %d holding %d", s.ID, v)
	}
	if _, err := Restore(context.Background(), st, t.TempDir(), RestoreAt(1)); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("RestoreAt a snapshot retention deleted: %v", err)
	}
	list, err := ReplicaSnapshots(context.Background(), st)
	if err != nil || len(list) < 5 || list[len(list)-1].ID != 8 || list[len(list)-1].Problem != nil || list[len(list)-1].States != 1 {
		t.Fatalf("ReplicaSnapshots: %+v %v", list, err)
	}
}

// A DB restored elsewhere saves on as a new lineage that takes the
// location over; the old DB is fenced there, and saves on locally.
func TestReplicaTakeOver(t *testing.T) {
	st := replDirStore(t)
	old := openT(t, t.TempDir(), WithReplica(st), withReplicaRetry(time.Millisecond, 10*time.Millisecond))
	c := newStateT(t, old, "c", 0)
	c.Set(1)
	replWait(t, old, saveT(t, old).ID)

	dir := filepath.Join(t.TempDir(), "new")
	if _, err := Restore(context.Background(), st, dir); err != nil {
		t.Fatal(err)
	}
	db := openT(t, dir, WithReplica(st))
	c2 := newStateT(t, db, "c", 0)
	c2.Set(2)
	replWait(t, db, saveT(t, db).ID)
	if db.ReplicationStatus().Lineage == old.ReplicationStatus().Lineage {
		t.Fatal("the restored DB continues the old lineage")
	}

	c.Set(3)
	s := saveT(t, old)
	ctx, cancel := context.WithTimeout(context.Background(), replicaHang)
	defer cancel()
	if err := old.WaitReplicated(ctx, s.ID); !errors.Is(err, ErrFenced) {
		t.Fatalf("the old DB: %v", err)
	}
	if st := old.ReplicationStatus(); !st.Fenced || !errors.Is(st.Stopped, ErrFenced) {
		t.Fatalf("the old DB's status: %+v", st)
	}
	c.Set(4)
	saveT(t, old) // saving goes on
}

// While the store is down, saves go on and the status says how far
// behind the replica is; when it is back, shipping catches up.
func TestReplicaStoreDown(t *testing.T) {
	st := replicatest.NewFaultStore(replicatest.NewMemStore())
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(replLockedWriter{&mu, &logs}, nil))
	db := openT(t, t.TempDir(), WithReplica(st), WithLogger(log), withReplicaRetry(time.Millisecond, 10*time.Millisecond))
	c := newStateT(t, db, "c", 0)
	c.Set(1)
	replWait(t, db, saveT(t, db).ID)
	st.SetDown(true)
	var last Snapshot
	for i := range 5 {
		c.Set(i + 2)
		last = saveT(t, db)
	}
	for deadline := time.Now().Add(replicaHang); db.ReplicationStatus().Err == nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no error reported while the store is down")
		}
	}
	s := db.ReplicationStatus()
	if s.Shipped != 1 || s.Current != last.ID || s.Pending == 0 || s.Behind == 0 || !errors.Is(s.Err, replica.ErrUnavailable) || s.Stopped != nil {
		t.Fatalf("status while down: %+v", s)
	}
	st.SetDown(false)
	replWait(t, db, last.ID)
	// The round that shipped it logs and clears the error as it ends.
	logged := func() string { mu.Lock(); defer mu.Unlock(); return logs.String() }
	for deadline := time.Now().Add(replicaHang); !strings.Contains(logged(), "replication works again") || db.ReplicationStatus().Err != nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no recovery logged, or the error stays: %v\n%s", db.ReplicationStatus().Err, logged())
		}
	}
	if !strings.Contains(logged(), "replication failed; retrying") {
		t.Fatalf("the log: %s", logged())
	}
	if _, err := Open(t.TempDir(), WithReplica(st), WithReadOnly()); err == nil {
		t.Fatal("a read-only DB replicates")
	}
	if err := openT(t, t.TempDir()).WaitReplicated(context.Background(), 1); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("WaitReplicated without a replica: %v", err)
	}
}

type replLockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l replLockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Wrong credentials stop shipping with a clear error, which neither the
// log nor the status shows the secret in; saving goes on.
func TestReplicaWrongCredentials(t *testing.T) {
	cfg := versitygw.Config(t)
	cfg.SecretKey = "wrong-" + cfg.SecretKey
	st := replS3Store(t, cfg)
	var logs bytes.Buffer
	var mu sync.Mutex
	db := openT(t, t.TempDir(), WithReplica(st), WithLogger(slog.New(slog.NewTextHandler(replLockedWriter{&mu, &logs}, nil))))
	c := newStateT(t, db, "c", 0)
	c.Set(1)
	s := saveT(t, db)
	ctx, cancel := context.WithTimeout(context.Background(), replicaHang)
	defer cancel()
	err := db.WaitReplicated(ctx, s.ID)
	if !errors.Is(err, replica.ErrMisconfigured) {
		t.Fatalf("wrong credentials: %v", err)
	}
	c.Set(2)
	saveT(t, db)
	mu.Lock()
	defer mu.Unlock()
	for _, text := range []string{logs.String(), err.Error(), fmt.Sprint(db.ReplicationStatus())} {
		if strings.Contains(text, cfg.SecretKey) || strings.Contains(text, cfg.SecretKey[6:]) {
			t.Fatalf("the secret shows: %s", text)
		}
	}
}

// The S3 server is killed in the middle of an upload: saving goes on
// while it is down; the store, as the server comes back, restores a
// complete snapshot no older than the last confirmed one (never a mix);
// shipping then catches up.
func TestReplicaServerKilledMidUpload(t *testing.T) {
	srv := versitygw.Own(t)
	cfg := srv.Config()
	cfg.MaxAttempts = 2
	st := replS3Store(t, cfg)
	dir := t.TempDir()
	db := openT(t, dir, WithReplica(st), WithRetain(4), withReplicaRetry(20*time.Millisecond, 200*time.Millisecond))
	big := newStateT(t, db, "big", []byte(nil))
	n := newStateT(t, db, "n", 0)
	want := map[uint64][]byte{}
	save := func() Snapshot {
		s := saveT(t, db)
		want[s.ID] = big.Get()
		return s
	}
	n.Set(1)
	confirmed := save().ID
	replWait(t, db, confirmed)
	midway := 0
	for round := range 3 {
		big.Set(replRandom(t, 16<<20))
		s := save()
		time.Sleep(time.Duration(round*40) * time.Millisecond)
		srv.Kill()
		if db.ReplicationStatus().Shipped < s.ID {
			midway++
		}
		n.Set(round + 10)
		after := save() // the server is down: saving goes on
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		// What the store holds now restores whole.
		r := filepath.Join(t.TempDir(), "r")
		got, err := Restore(context.Background(), replS3Store(t, cfg), r)
		if err != nil {
			t.Fatalf("round %d: restore after the kill: %v", round, err)
		}
		if got.ID < confirmed {
			t.Fatalf("round %d: restored snapshot %d, but %d was confirmed", round, got.ID, confirmed)
		}
		rdb := openT(t, r, WithReadOnly())
		if b := newStateT(t, rdb, "big", []byte(nil)).Get(); !bytes.Equal(b, want[got.ID]) {
			t.Fatalf("round %d: snapshot %d restored with other bytes", round, got.ID)
		}
		rdb.Close()
		replWait(t, db, after.ID)
		confirmed = after.ID
	}
	t.Logf("%d of 3 kills landed before the snapshot was in the store", midway)
}

// Restore into "." (the working directory, empty) works: the directory
// is made absolute before the temporary one beside it is named.
func TestReplicaRestoreIntoDot(t *testing.T) {
	st := replDirStore(t)
	db := openT(t, t.TempDir(), WithReplica(st))
	c := newStateT(t, db, "c", 0)
	c.Set(7)
	s := saveT(t, db)
	replWait(t, db, s.ID)
	dir := filepath.Join(t.TempDir(), "r")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	if _, err := Restore(context.Background(), st, "."); err != nil {
		t.Fatalf("Restore into .: %v", err)
	}
	r := openT(t, dir, WithReadOnly())
	if v := newStateT(t, r, "c", 0).Get(); v != 7 {
		t.Fatalf("restored into .: c = %d, want 7", v)
	}
}

// RestoreAt(0), RestoreBefore of the zero time, and both options at once
// are refused, not read as "the newest" or one silently winning.
func TestReplicaRestoreBadOptions(t *testing.T) {
	st := replDirStore(t)
	db := openT(t, t.TempDir(), WithReplica(st))
	newStateT(t, db, "c", 0).Set(1)
	s := saveT(t, db)
	replWait(t, db, s.ID)
	for name, opts := range map[string][]RestoreOption{
		"RestoreAt(0)":        {RestoreAt(0)},
		"RestoreBefore(zero)": {RestoreBefore(time.Time{})},
		"both":                {RestoreAt(s.ID), RestoreBefore(s.Time)},
	} {
		dir := filepath.Join(t.TempDir(), "r")
		_, err := Restore(context.Background(), st, dir, opts...)
		if !errors.Is(err, ErrBadOption) {
			t.Errorf("%s: %v, want ErrBadOption", name, err)
		}
		if _, serr := os.Stat(dir); serr == nil {
			t.Errorf("%s: refused, yet wrote %s", name, dir)
		}
	}
}

// Restore into an empty directory that is a mount point (a fresh volume),
// which cannot be removed and replaced: the files are moved into it.
func TestRestoreIntoMountPoint(t *testing.T) {
	vol := testdisk.Tmpfs(t, "64m")
	st := replDirStore(t)
	db := openT(t, t.TempDir(), WithReplica(st))
	c := newStateT(t, db, "c", 0)
	c.Set(7)
	replWait(t, db, saveT(t, db).ID)
	db.Close()
	if _, err := Restore(context.Background(), st, vol); err != nil {
		t.Fatal(err)
	}
	names, _ := os.ReadDir(vol)
	for _, n := range names {
		if strings.Contains(n.Name(), "restore") {
			t.Fatalf("left %s in the volume", n.Name())
		}
	}
	r := openT(t, vol)
	if got := newStateT(t, r, "c", 0).Get(); got != 7 {
		t.Fatalf("restored %d", got)
	}
	r.Close()
}
