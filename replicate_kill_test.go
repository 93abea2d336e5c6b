package instadump

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/instadump/instadump/replica"
)

// kill -9 during shipping: the test binary re-runs itself as a child
// (TestReplicaKillChild) that saves in a loop, replicating to a directory
// store, and prints an acknowledgement whenever WaitReplicated confirms a
// snapshot; the parent kills it at random moments. The store as the dead
// process left it must restore a complete snapshot, no older than the
// last confirmed, with the transfer invariant intact; every snapshot it
// lists as complete must restore; the reopened DB ships on from where the
// store is. INSTADUMP_KILL_ROUNDS sets the rounds.

const (
	replKillAccounts = 4
	replKillTotal    = 1000
)

type replKillStates struct {
	accts   []*State[int]
	counter *State[int]
	pad     *State[[]byte]
}

func openReplKill(dir string, opts ...Option) (*DB, *replKillStates, error) {
	db, err := Open(dir, opts...)
	if err != nil {
		return nil, nil, err
	}
	ks := &replKillStates{}
	for i := range replKillAccounts {
		s, err := NewState(db, fmt.Sprint("acct", i), replKillTotal/replKillAccounts)
		if err != nil {
			db.Close()
			return nil, nil, err
		}
		ks.accts = append(ks.accts, s)
	}
	if ks.counter, err = NewState(db, "counter", 0); err == nil {
		ks.pad, err = NewState(db, "pad", []byte(nil))
	}
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, ks, nil
}

// check returns the snapshot's counter, checking the invariant: the
// accounts always hold the total, and the counter is the snapshot's ID.
func (ks *replKillStates) check(id uint64) (int, error) {
	sum := 0
	for _, a := range ks.accts {
		sum += a.Get()
	}
	if sum != replKillTotal {
		return 0, fmt.Errorf("snapshot %d: the accounts hold %d, want %d: half a transaction", id, sum, replKillTotal)
	}
	if c := ks.counter.Get(); uint64(c) != id {
		return 0, fmt.Errorf("snapshot %d holds counter %d", id, c)
	}
	return ks.counter.Get(), nil
}

// TestReplicaKillChild is the child of TestReplicaKill9; it does nothing
// on its own.
func TestReplicaKillChild(t *testing.T) {
	dir, store := os.Getenv("INSTADUMP_REPL_KILL_DIR"), os.Getenv("INSTADUMP_REPL_KILL_STORE")
	if dir == "" {
		t.Skip("the child process of TestReplicaKill9")
	}
	st, err := replica.NewDir(store)
	if err != nil {
		t.Fatal(err)
	}
	db, ks, err := openReplKill(dir, WithReplica(st), WithRetain(3), withReplicaRetry(time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	out := bufio.NewWriter(os.Stdout)
	for {
		err := db.Atomically(func(tx *Tx) error {
			from, to := ks.accts[rand.IntN(replKillAccounts)], ks.accts[rand.IntN(replKillAccounts)]
			amount := rand.IntN(10)
			from.SetIn(tx, from.GetIn(tx)-amount)
			to.SetIn(tx, to.GetIn(tx)+amount)
			ks.counter.SetIn(tx, ks.counter.GetIn(tx)+1)
			ks.pad.SetIn(tx, make([]byte, rand.IntN(300_000)))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		s, err := db.Save()
		if err != nil {
			t.Fatal(err)
		}
		if s.ID%3 == 0 {
			if err := db.WaitReplicated(context.Background(), s.ID); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(out, "ack %d\n", s.ID)
			out.Flush()
		}
	}
}

func TestReplicaKill9(t *testing.T) {
	rounds := 8
	if s := os.Getenv("INSTADUMP_KILL_ROUNDS"); s != "" {
		var err error
		if rounds, err = strconv.Atoi(s); err != nil {
			t.Fatalf("INSTADUMP_KILL_ROUNDS=%q", s)
		}
	}
	dir, store := filepath.Join(t.TempDir(), "db"), t.TempDir()
	st, err := replica.NewDir(store)
	if err != nil {
		t.Fatal(err)
	}
	var acked uint64
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestReplicaKillChild$", "-test.v=false")
		cmd.Env = append(os.Environ(), "INSTADUMP_REPL_KILL_DIR="+dir, "INSTADUMP_REPL_KILL_STORE="+store)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acks := make(chan uint64, 1<<16)
		go func() {
			defer close(acks)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var id uint64
				if _, err := fmt.Sscanf(sc.Text(), "ack %d", &id); err == nil {
					acks <- id
				}
			}
		}()
		time.Sleep(time.Duration(50+rand.IntN(250)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		for id := range acks {
			acked = max(acked, id)
		}
		cmd.Wait()

		// The store as the killed process left it.
		restored := filepath.Join(t.TempDir(), "restored")
		snap, err := Restore(context.Background(), st, restored)
		if err != nil {
			if acked == 0 {
				continue // nothing confirmed yet, nothing owed
			}
			t.Fatalf("round %d: restore: %v", round, err)
		}
		if snap.ID < acked {
			t.Fatalf("round %d: restored snapshot %d, but %d was confirmed", round, snap.ID, acked)
		}
		rdb, ks, err := openReplKill(restored, WithReadOnly())
		if err != nil {
			t.Fatal(err)
		}
		_, err = ks.check(snap.ID)
		rdb.Close()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		list, err := ReplicaSnapshots(context.Background(), st)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range list {
			if s.Problem != nil {
				t.Fatalf("round %d: the store lists snapshot %d, which cannot be restored: %v", round, s.ID, s.Problem)
			}
		}
	}
	// The DB reopened ships on from where the store is.
	db, ks, err := openReplKill(dir, WithReplica(st))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cur, _ := db.Snapshots()
	if len(cur) == 0 {
		t.Fatal("the child saved nothing")
	}
	replWait(t, db, 0)
	want, err := ks.check(cur[len(cur)-1].ID)
	if err != nil {
		t.Fatal(err)
	}
	restored := filepath.Join(t.TempDir(), "last")
	snap, err := Restore(context.Background(), st, restored)
	if err != nil || snap.ID != cur[len(cur)-1].ID {
		t.Fatalf("restore after reopening: %+v, %v; want snapshot %d", snap, err, cur[len(cur)-1].ID)
	}
	rdb, rks, err := openReplKill(restored, WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if got, err := rks.check(snap.ID); err != nil || got != want {
		t.Fatalf("restored counter %d (%v), want %d", got, err, want)
	}
	t.Logf("%d kill -9 rounds; the last confirmed snapshot was %d of %d saved", rounds, acked, snap.ID)
}
