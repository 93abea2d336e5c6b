package main

import (
	"flag"
	"fmt"

	"github.com/instadump/instadump/inspect"
)

var cmdDiff = &command{
	name: "diff", args: "DIR ID1 ID2", nargs: 3,
	about: "list the states that differ between two snapshots",
	flags: func(fs *flag.FlagSet, o *opts) { jsonFlag(fs, o) },
	run: func(e *env, args []string) int {
		a, err := parseID(args[1])
		if err != nil {
			fmt.Fprintf(e.stderr, "instadump-inspect diff: %v\n", err)
			return 2
		}
		b, err := parseID(args[2])
		if err != nil {
			fmt.Fprintf(e.stderr, "instadump-inspect diff: %v\n", err)
			return 2
		}
		return e.withDB(args[0], func(db *inspect.DB) int {
			diffs, err := db.Diff(a, b)
			if err != nil {
				return e.fail(err)
			}
			if e.opts.json {
				return e.printJSON(diffs)
			}
			tw := e.table()
			fmt.Fprintln(tw, "NAME\tCHANGE")
			for _, d := range diffs {
				fmt.Fprintf(tw, "%s\t%s\n", d.Name, d.Change)
			}
			tw.Flush()
			return 0
		})
	},
}
