// Command bench measures instadump against what a user would otherwise
// write (gob to a temp file, fsync, rename) and against embedded stores
// (bbolt, Pebble), on the same work in the same run, interleaved, and
// prints a table of medians with their min–max spread:
//
//	cd bench && go run . [flags]
//	cd bench && go run . -md ../BENCHMARKS.md   # also write the table
//	cd bench && go run . -levels-only -only ABC # the zstd level study alone
//
// It lives in its own module so that the peers never enter instadump's.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

var (
	flagRuns     = flag.Int("runs", 5, "rounds; medians are over these")
	flagAEntries = flag.Int("a-entries", 1_000_000, "workload A: map entries")
	flagBStates  = flag.Int("b-states", 1000, "workload B: states")
	flagBSize    = flag.Int("b-size", 100<<10, "workload B: bytes per state")
	flagCMB      = flag.Int("c-mb", 64, "workload C: MiB")
	flagDEntries = flag.Int("d-entries", 1_000_000, "workload D: map entries")
	flagSaves    = flag.Int("disk-saves", 50, "saves (of B changing 10%, of D changing 1%) before measuring disk use")
	flagOnly     = flag.String("only", "ABCD", "workloads to run")
	flagMD       = flag.String("md", "", "also write the results as Markdown to this file")
	flagDir      = flag.String("dir", "", "directory for the stores (default: a temp dir)")
	flagLevels   = flag.Bool("levels", false, "also time a full save of A, B and C at each zstd level, with the bytes on disk (a table of its own)")
	flagLevOnly  = flag.Bool("levels-only", false, "time only the zstd levels on A, B and C (implies -levels)")
)

func main() {
	flag.Parse()
	dir := *flagDir
	if dir == "" {
		d, err := os.MkdirTemp("", "instadump-bench-")
		if err != nil {
			fail(err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	var reports []*report
	var levels []*levelReport
	for _, name := range *flagOnly {
		var w *workload
		if name == 'D' && *flagLevOnly {
			continue
		}
		if name == 'D' {
			fmt.Fprintf(os.Stderr, "workload D: a Map of %d entries\n", *flagDEntries)
			rep, err := runD(*flagDEntries, filepath.Join(dir, "D"))
			if err != nil {
				fail(fmt.Errorf("workload D: %w", err))
			}
			reports = append(reports, rep)
			continue
		}
		switch name {
		case 'A':
			w = workloadA(*flagAEntries)
		case 'B':
			w = workloadB(*flagBStates, *flagBSize)
		case 'C':
			w = workloadC(*flagCMB)
		default:
			fail(fmt.Errorf("unknown workload %c", name))
		}
		fmt.Fprintf(os.Stderr, "workload %s: %s\n", w.name, w.about)
		if !*flagLevOnly {
			rep, err := runWorkload(w, filepath.Join(dir, w.name))
			if err != nil {
				fail(fmt.Errorf("workload %s: %w", w.name, err))
			}
			reports = append(reports, rep)
			runtime.GC()
		}
		if *flagLevels || *flagLevOnly {
			lr, err := runLevels(w, filepath.Join(dir, w.name+"-levels"))
			if err != nil {
				fail(fmt.Errorf("workload %s, zstd levels: %w", w.name, err))
			}
			levels = append(levels, lr)
			runtime.GC()
		}
	}
	md := ""
	if len(reports) > 0 {
		md = render(reports)
	}
	md += renderLevels(levels)
	fmt.Print(md)
	if *flagMD != "" {
		head := fmt.Sprintf("# Benchmarks\n\n%s, %d cores, %s. Command: `cd bench && go run . %s`. "+
			"Each cell is the median of %d interleaved rounds, with the min–max spread.\n\n",
			runtime.GOARCH, runtime.NumCPU(), runtime.Version(), strings.Join(os.Args[1:], " "), *flagRuns)
		if err := os.WriteFile(*flagMD, []byte(head+md), 0o644); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}
