package fuzz

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/instadump/instadump/fuzz/internal/powerload"
)

func TestMain(m *testing.M) {
	if role := os.Getenv("INSTADUMP_FUZZ_CHILD"); role != "" {
		os.Exit(child(role))
	}
	code := m.Run()
	if figures.crashPoints.Load()+figures.injected.Load()+figures.flipped.Load()+figures.killRounds.Load() > 0 {
		fmt.Printf("crash figures: %d crash points enumerated (%d in Map workloads), %d crash states checked (%d in Map workloads), %d injected errors (%d in Map workloads), %d bits flipped (%d detected; the rest read back intact), %d kill -9 rounds (%d recovered the in-flight save; %d Map keys checked)\n",
			figures.crashPoints.Load(), mapFigures.crashPoints.Load(), figures.crashStates.Load(), mapFigures.crashStates.Load(),
			figures.injected.Load(), mapFigures.injected.Load(), figures.flipped.Load(), figures.flipDetected.Load(),
			figures.killRounds.Load(), figures.killInflight.Load(), mapFigures.killKeys.Load())
		var kinds []string
		for i, name := range crashKindNames {
			if n := figures.kinds[i].Load(); n > 0 {
				kinds = append(kinds, fmt.Sprintf("%s %d", name, n))
			}
		}
		if len(kinds) > 0 {
			fmt.Printf("crash states by kind: %s\n", strings.Join(kinds, ", "))
		}
		if code == 0 {
			// Every check compares with the model and fails the test on
			// any difference: a run that passed lost nothing.
			fmt.Println("acknowledged saves lost: 0, wrong data: 0")
		}
	}
	os.Exit(code)
}

func child(role string) int {
	switch role {
	case "kill":
		return killChild(os.Getenv("INSTADUMP_KILL_DIR"))
	case "power":
		return powerload.Child()
	}
	fmt.Fprintln(os.Stderr, "unknown child role", role)
	return 2
}
