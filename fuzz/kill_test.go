package fuzz

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/instadump/instadump"
	"github.com/instadump/instadump/fuzz/internal/powerload"
)

// A real process, killed: the test binary re-executes itself as a child
// that loops Atomically + Save and prints an acknowledgement after each
// Save returns; the parent sends SIGKILL at a random moment, reopens, and
// checks the recovered snapshot is the last acknowledged one or the next,
// with content that matches, a Map of accounts key by key too.
// INSTADUMP_KILL_ROUNDS sets the rounds.

const (
	killAccounts = 5
	killTotal    = 1000
)

type killStates struct {
	accts   []*instadump.State[int]
	counter *instadump.State[int]
	pad     *instadump.State[[]byte]
	mapped  *instadump.Map[string, int] // accounts too, key by key
}

func openKillDB(dir string) (*instadump.DB, *killStates, error) {
	db, err := instadump.Open(dir)
	if err != nil {
		return nil, nil, err
	}
	ks := &killStates{}
	for i := 0; i < killAccounts; i++ {
		s, err := instadump.NewState(db, fmt.Sprint("acct", i), killTotal/killAccounts)
		if err != nil {
			db.Close()
			return nil, nil, err
		}
		ks.accts = append(ks.accts, s)
	}
	if ks.counter, err = instadump.NewState(db, "counter", 0); err == nil {
		if ks.pad, err = instadump.NewState(db, "pad", []byte(nil)); err == nil {
			ks.mapped, err = instadump.NewMap[string, int](db, killMapName)
		}
	}
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, ks, nil
}

// killChild saves forever, printing "ack ID COUNTER" after each Save.
func killChild(dir string) int {
	db, ks, err := openKillDB(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for {
		snap, err := powerload.AtomicallySave(db, func(tx *instadump.Tx) error {
			from, to := ks.accts[rng.Intn(killAccounts)], ks.accts[rng.Intn(killAccounts)]
			amount := rng.Intn(10)
			from.SetIn(tx, from.GetIn(tx)-amount)
			to.SetIn(tx, to.GetIn(tx)+amount)
			ks.counter.SetIn(tx, ks.counter.GetIn(tx)+1)
			killMapSetIn(tx, ks.mapped, ks.counter.GetIn(tx))
			ks.pad.SetIn(tx, make([]byte, rng.Intn(200_000))) // saves of varied length
			return nil
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("ack %d %d\n", snap.ID, ks.counter.Get())
	}
}

// recovered opens dir and returns the current snapshot's ID and counter,
// checking the accounts' invariant.
func recovered(dir string) (id uint64, counter int, err error) {
	db, ks, err := openKillDB(dir)
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	sum := 0
	for _, a := range ks.accts {
		sum += a.Get()
	}
	if sum != killTotal {
		return 0, 0, fmt.Errorf("accounts hold %d, want %d: half a transaction was recovered", sum, killTotal)
	}
	if err := checkKillMap(ks.mapped, ks.counter.Get()); err != nil {
		return 0, 0, err
	}
	snaps, err := db.Snapshots()
	if err != nil || len(snaps) == 0 {
		return 0, ks.counter.Get(), err
	}
	return snaps[len(snaps)-1].ID, ks.counter.Get(), nil
}

func TestCrashKill9(t *testing.T) {
	rounds := powerload.Rounds(t, "INSTADUMP_KILL_ROUNDS", 30)
	dir := filepath.Join(t.TempDir(), "db")
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	var ackID uint64
	var ackCounter int
	for round := 0; round < rounds; round++ {
		cmd := powerload.ChildCommand("kill", "INSTADUMP_KILL_DIR="+dir)
		done, err := powerload.StartChild(cmd, func(id, c uint64) { ackID, ackCounter = id, int(c) })
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(20+rng.Intn(80)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		cmd.Wait()
		id, counter, err := recovered(dir)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		switch {
		case id == ackID && counter == ackCounter:
		case id == ackID+1 && counter == ackCounter+1:
			figures.killInflight.Add(1)
		default:
			t.Fatalf("round %d: recovered snapshot %d with counter %d; last acknowledged %d with counter %d", round, id, counter, ackID, ackCounter)
		}
		ackID, ackCounter = id, counter
		figures.killRounds.Add(1)
	}
}
