package powerload

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"github.com/instadump/instadump"
)

// ChildEnv is the environment variable that makes a test binary run as
// the child (its TestMain calls Child when it is "power").
const ChildEnv = "INSTADUMP_FUZZ_CHILD"

// ChildCommand returns the command that re-executes this test binary as
// a child in role (ChildEnv's value), with env added to its environment.
// It dies with its parent.
func ChildCommand(role string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), ChildEnv+"="+role), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	return cmd
}

// Command returns the command that re-executes this test binary as a
// child saving workload w, under seed, in dir.
func Command(dir string, w *Workload, seed int64) *exec.Cmd {
	return ChildCommand("power", "INSTADUMP_POWER_DIR="+dir, "INSTADUMP_POWER_WORKLOAD="+w.Name,
		"INSTADUMP_POWER_SEED="+strconv.FormatInt(seed, 10))
}

// StartChild starts cmd and calls ack with the two numbers of each line
// "ack A B" it prints; done is closed once its output ends.
func StartChild(cmd *exec.Cmd, ack func(a, b uint64)) (done <-chan struct{}, err error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var a, b uint64
			if _, err := fmt.Sscanf(sc.Text(), "ack %d %d", &a, &b); err == nil {
				ack(a, b)
			}
		}
	}()
	return ch, nil
}

// Child runs the workload its environment names until it is killed or
// fails: it opens the DB, prints "ready STEP", then for each next step
// makes its changes, saves, and prints "ack STEP SNAPSHOT" once Save has
// returned. It returns the process's exit code.
func Child() int {
	dir := os.Getenv("INSTADUMP_POWER_DIR")
	w := ByName(os.Getenv("INSTADUMP_POWER_WORKLOAD"))
	seed, err := strconv.ParseInt(os.Getenv("INSTADUMP_POWER_SEED"), 10, 64)
	if w == nil || err != nil {
		fmt.Fprintln(os.Stderr, "powerload child: bad environment")
		return 2
	}
	db, st, err := w.open(dir)
	if err != nil {
		// After the cut every call fails: that is the end, not a bug.
		fmt.Fprintln(os.Stderr, "powerload child: open:", err)
		return 1
	}
	k := st.step.Get()
	// os.Stdout is unbuffered: each line is one write.
	fmt.Printf("ready %d\n", k)
	for saves := 1; ; saves++ {
		k++
		snap, err := AtomicallySave(db, st.apply(seed, k, w.Step(seed, k)))
		if err != nil {
			fmt.Fprintln(os.Stderr, "powerload child:", err)
			return 1
		}
		fmt.Printf("ack %d %d\n", k, snap.ID)
		if w.ReopenEvery > 0 && saves%w.ReopenEvery == 0 {
			if err := db.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "powerload child: close:", err)
				return 1
			}
			if db, st, err = w.open(dir); err != nil {
				fmt.Fprintln(os.Stderr, "powerload child: reopen:", err)
				return 1
			}
		}
	}
}

// AtomicallySave makes the changes of tx in one Atomically and saves
// them: one step of a child. Its error says which of the two failed.
func AtomicallySave(db *instadump.DB, tx func(*instadump.Tx) error) (instadump.Snapshot, error) {
	if err := db.Atomically(tx); err != nil {
		return instadump.Snapshot{}, fmt.Errorf("atomically: %w", err)
	}
	snap, err := db.Save()
	if err != nil {
		return snap, fmt.Errorf("save: %w", err)
	}
	return snap, nil
}
