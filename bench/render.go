package main

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

var columns = []string{"instadump", "naive gob", "bbolt", "pebble", "limit"}

func cell(v []float64, unit string) string {
	if len(v) == 0 {
		return ""
	}
	v = slices.Clone(v)
	sort.Float64s(v)
	f := func(x float64) string {
		switch unit {
		case "s":
			if x < 1 {
				return fmt.Sprintf("%.1f ms", x*1000)
			}
			return fmt.Sprintf("%.2f s", x)
		case "MB":
			return fmt.Sprintf("%.1f MB", x)
		case "µs":
			return fmt.Sprintf("%.0f µs", x)
		case "count":
			return fmt.Sprintf("%.0f", x)
		}
		return fmt.Sprintf("%.2f", x)
	}
	if len(v) == 1 {
		return f(v[0])
	}
	return fmt.Sprintf("%s (%s–%s)", f(v[len(v)/2]), f(v[0]), f(v[len(v)-1]))
}

func render(reports []*report) string {
	var b strings.Builder
	for _, r := range reports {
		cols := columns
		if r.columns != nil {
			cols = append(slices.Clone(r.columns), "limit")
		}
		fmt.Fprintf(&b, "## Workload %s: %s\n\n", r.w.name, r.w.about)
		fmt.Fprintf(&b, "| | %s |\n|---|%s\n", strings.Join(cols, " | "), strings.Repeat("---|", len(cols)))
		for _, m := range r.metrics {
			row := []string{m.name}
			for _, c := range cols {
				row = append(row, cell(m.by[c], m.unit))
			}
			fmt.Fprintf(&b, "| %s |\n", strings.Join(row, " | "))
		}
		b.WriteString("\n")
	}
	b.WriteString(targets(reports))
	return b.String()
}

// targets checks the ratios instadump aims for, from the medians: A, B
// and C against the naive gob file and B's peak heap; D, the Map, against
// its own full save, the State, the naive gob file, bbolt and Pebble.
func targets(reports []*report) string {
	get := func(w string) *report {
		for _, r := range reports {
			if r.w.name == w {
				return r
			}
		}
		return nil
	}
	var b strings.Builder
	b.WriteString("## Targets (ratios of medians from this run)\n\n| target | ratio | limit | met |\n|---|---|---|---|\n")
	// row checks num/den ≤ limit; below checks num/den < limit.
	check := func(what string, num, den, limit float64, strict bool) {
		if num <= 0 || den <= 0 { // not measured (or noise at a tiny size)
			return
		}
		ratio := num / den
		op, met := "≤", ratio <= limit
		if strict {
			op, met = "<", ratio < limit
		}
		yes := "yes"
		if !met {
			yes = "**no**"
		}
		fmt.Fprintf(&b, "| %s | %.3f | %s %.2f | %s |\n", what, ratio, op, limit, yes)
	}
	row := func(what string, num, den, limit float64) { check(what, num, den, limit, false) }
	below := func(what string, num, den, limit float64) { check(what, num, den, limit, true) }
	const id, gob = "instadump", "naive gob"
	if a := get("A"); a != nil {
		row("A full save / naive gob", a.median("full save", id), a.median("full save", gob), 0.4)
		row("A open + read / naive gob", a.median("open + read back", id), a.median("open + read back", gob), 0.5)
	}
	if bw := get("B"); bw != nil {
		row("B full save / naive gob", bw.median("full save", id), bw.median("full save", gob), 0.7)
		row("B open + read / naive gob", bw.median("open + read back", id), bw.median("open + read back", gob), 0.7)
		row("B peak heap growth during a full save / its encoded size", bw.median("peak heap growth during full save", id), bw.median("msgpack size", "limit"), 1.5)
	}
	if c := get("C"); c != nil {
		row("C full save / naive gob", c.median("full save", id), c.median("full save", gob), 1.0)
	}
	if d := get("D"); d != nil {
		const st = "instadump State"
		full := d.median("full save", id)
		one := d.median("save changing 1% of keys", id)
		row("D save changing 1% / the Map's full save", one, full, 0.03)
		row("D save changing 1% / the same change as one State", one, d.median("save changing 1% of keys", st), 0.05)
		row("D save changing 1% / bbolt's per-key writes", one, d.median("save changing 1% of keys", "bbolt"), 0.5)
		row("D save changing 1% / Pebble's per-key writes", one, d.median("save changing 1% of keys", "pebble"), 0.5)
		row("D full save / naive gob", full, d.median("full save", gob), 0.5)
		row("D open + load / naive gob's read", d.median("open + load", id), d.median("open + load", gob), 0.6)
		for _, when := range []string{"during a full save", "during a save changing 1%"} {
			below("D Map.Set "+when+", p99 / 5 µs", d.median("Map.Set "+when+": p99", id), 5, 1)
			below("D Map.Set "+when+", max / 1 ms", d.median("Map.Set "+when+": max", id), 1000, 1)
		}
		row("D resident size of the loaded Map / a plain Go map", d.median("resident size loaded", id), d.median("resident size loaded", "limit"), 1.3)
		row("D peak heap growth, save changing 1% / its encoded size", d.median("peak heap growth during a save changing 1%", id),
			d.median("peak heap growth during a save changing 1%", "limit"), 2)
		after := fmt.Sprintf(dDiskAfter, *flagSaves)
		row(fmt.Sprintf("D disk after %d saves changing 1%% / the live map's encoded size", *flagSaves), d.median(after, id), d.median(after, "limit"), 3)
		row("D most disk during those saves / the live map's encoded size", d.median(dDiskPeak, id), d.median(dDiskPeak, "limit"), 3)
		row("D open + load, longest chain / base alone", d.median(dLoadChain, id), d.median(dLoadBase, id), 1.3)
	}
	b.WriteString("\n")
	return b.String()
}
