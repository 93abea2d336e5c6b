package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/instadump/instadump"
)

// The zstd level study: a full save of workloads A, B
// and C at each level klauspost/compress's zstd offers, as instadump's
// WithCompression names them, timed, with the bytes it leaves on disk.
// The levels take turns within each round, in an order that rotates from
// round to round.

var studyLevels = []struct {
	level instadump.Level
	name  string
}{
	{instadump.LevelFastest, "LevelFastest (zstd SpeedFastest)"},
	{instadump.LevelDefault, "LevelDefault (zstd SpeedDefault)"},
	{instadump.LevelBetter, "LevelBetter (zstd SpeedBetterCompression)"},
	{instadump.LevelBest, "LevelBest (zstd SpeedBestCompression)"},
}

// levelReport holds one workload's samples, by level (an index of
// studyLevels).
type levelReport struct {
	w           *workload
	save, bytes [][]float64
}

func runLevels(w *workload, dir string) (*levelReport, error) {
	lr := &levelReport{w: w, save: make([][]float64, len(studyLevels)), bytes: make([][]float64, len(studyLevels))}
	for round := 0; round < *flagRuns; round++ {
		fmt.Fprintf(os.Stderr, "  levels, round %d/%d\n", round+1, *flagRuns)
		for j := range studyLevels {
			i := (j + round) % len(studyLevels)
			sdir := filepath.Join(dir, fmt.Sprint(round), fmt.Sprint(i))
			s := &idump{opts: []instadump.Option{instadump.WithCompression(studyLevels[i].level)}}
			if err := s.open(sdir, w); err != nil {
				return nil, fmt.Errorf("%s: %w", studyLevels[i].name, err)
			}
			runtime.GC()
			t := time.Now()
			err := s.save(w, nil)
			d := time.Since(t)
			if cerr := s.close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", studyLevels[i].name, err)
			}
			lr.save[i] = append(lr.save[i], d.Seconds())
			lr.bytes[i] = append(lr.bytes[i], float64(du(sdir))/1e6)
			os.RemoveAll(sdir)
		}
	}
	return lr, nil
}

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	sort.Float64s(v)
	return v[len(v)/2]
}

// renderLevels renders the study as one table, a row per workload and
// level, with each level's time and bytes against the fastest level's and
// the smallest.
func renderLevels(lrs []*levelReport) string {
	if len(lrs) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## zstd levels: instadump's full save at each level (medians of %d rounds)\n\n", *flagRuns)
	b.WriteString("Time and bytes against LevelFastest's in the same run; bytes also against the smallest of the levels.\n\n")
	b.WriteString("| workload | level | full save | / LevelFastest | bytes on disk | / LevelFastest | / smallest |\n|---|---|---|---|---|---|---|\n")
	for _, lr := range lrs {
		fastSave, fastBytes := medianOf(lr.save[0]), medianOf(lr.bytes[0])
		smallest := 0.0
		for i := range studyLevels {
			if m := medianOf(lr.bytes[i]); smallest == 0 || m < smallest {
				smallest = m
			}
		}
		for i, l := range studyLevels {
			sv, by := medianOf(lr.save[i]), medianOf(lr.bytes[i])
			fmt.Fprintf(&b, "| %s | %s | %s | %.2fx | %s | %.3fx | %.3fx |\n", lr.w.name, l.name,
				cell(lr.save[i], "s"), sv/fastSave, cell(lr.bytes[i], "MB"), by/fastBytes, by/smallest)
		}
	}
	b.WriteString("\n")
	return b.String()
}
