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

// targets checks the ratios instadump aims for, from the medians.
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
	row := func(what string, num, den, limit float64) {
		if num == 0 || den == 0 {
			return
		}
		ratio := num / den
		met := "yes"
		if ratio > limit {
			met = "**no**"
		}
		fmt.Fprintf(&b, "| %s | %.3f | %.2f | %s |\n", what, ratio, limit, met)
	}
	const id = "instadump"
	if a := get("A"); a != nil {
		full := a.median("full save", id)
		row("A full save / naive", full, a.median("full save", "naive gob"), 0.5)
		row("A full save / bbolt", full, a.median("full save", "bbolt"), 0.7)
		row("A full save / pebble", full, a.median("full save", "pebble"), 0.4)
		row("A full save / msgpack encoding alone", full, a.median("msgpack encoding alone", "limit"), 1.3)
		row("A Set on a state the save is not writing, p99 / 1 ms", a.median("Set on a state the save is not writing: p99", id), 1000, 1)
		row("A Set on the state the save is writing, max / encoding it", a.median("Set on the state the save is writing: max", id)/1e6, a.median("msgpack encoding alone", "limit"), 1.1)
		row("A open + read / naive", a.median("open + read back", id), a.median("open + read back", "naive gob"), 0.6)
		row("A open + read / (decompression + decoding alone)", a.median("open + read back", id),
			a.median("zstd decompression alone (all cores)", "limit")+a.median("msgpack decoding alone", "limit"), 1.2)
		row("A peak heap growth / encoded size", a.median("peak heap growth during full save", id), a.median("msgpack size", "limit"), 1.5)
	}
	if bw := get("B"); bw != nil {
		full := bw.median("full save", id)
		row("B save changing 1% / full save", bw.median("save changing 1%", id), full, 0.03)
		row("B save changing 10% / full save", bw.median("save changing 10%", id), full, 0.15)
		perState := bw.median("msgpack encoding alone", "limit") / float64(len(bw.w.values))
		row("B longest Set wait / encoding one state", bw.median("Set on a state the save is not writing: max", id)/1e6, perState, 1)
		name := fmt.Sprintf("disk after %d saves changing 10%% (limit: msgpack of the live states)", *flagSaves)
		row("B disk after the saves / live data", bw.median(name, id), bw.median(name, "limit"), 3)
	}
	if d := get("D"); d != nil {
		const st = "instadump State"
		full := d.median("full save", id)
		one := d.median("save changing 1% of keys", id)
		row("D save changing 1% / the Map's full save", one, full, 0.03)
		row("D save changing 1% / the same change as one State", one, d.median("save changing 1% of keys", st), 0.05)
		row("D save changing 1% / bbolt's per-key writes", one, d.median("save changing 1% of keys", "bbolt"), 0.5)
		row("D save changing 1% / Pebble's per-key writes", one, d.median("save changing 1% of keys", "pebble"), 0.5)
		row("D full save / naive", full, d.median("full save", "naive gob"), 0.5)
		row("D open + load / naive", d.median("open + load", id), d.median("open + load", "naive gob"), 0.6)
		for _, when := range []string{"during a full save", "during a save changing 1%"} {
			row("D Map.Set "+when+", p99 / 5 µs", d.median("Map.Set "+when+": p99", id), 5, 1)
			row("D Map.Set "+when+", max / 1 ms", d.median("Map.Set "+when+": max", id), 1000, 1)
		}
		row("D resident size of the loaded Map / a plain Go map", d.median("resident size loaded", id), d.median("resident size loaded", "limit"), 1.3)
		row("D peak heap growth, save changing 1% / its encoded size", d.median("peak heap growth during a save changing 1%", id),
			d.median("peak heap growth during a save changing 1%", "limit"), 2)
	}
	b.WriteString("\n")
	return b.String()
}
