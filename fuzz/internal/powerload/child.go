package powerload

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// ChildEnv is the environment variable that makes a test binary run as
// the child (its TestMain calls Child when it is "power").
const ChildEnv = "INSTADUMP_FUZZ_CHILD"

// Command returns the command that re-executes this test binary as a
// child saving workload w, under seed, in dir. It dies with its parent.
func Command(dir string, w *Workload, seed int64) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), ChildEnv+"=power",
		"INSTADUMP_POWER_DIR="+dir, "INSTADUMP_POWER_WORKLOAD="+w.Name,
		"INSTADUMP_POWER_SEED="+strconv.FormatInt(seed, 10))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	return cmd
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
		if err := st.apply(db, seed, k, w.Step(seed, k)); err != nil {
			fmt.Fprintln(os.Stderr, "powerload child: atomically:", err)
			return 1
		}
		snap, err := db.Save()
		if err != nil {
			fmt.Fprintln(os.Stderr, "powerload child: save:", err)
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
