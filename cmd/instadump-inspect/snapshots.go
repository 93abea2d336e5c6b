package main

import (
	"flag"
	"fmt"

	"github.com/instadump/instadump/inspect"
)

var cmdSnapshots = &command{
	name: "snapshots", args: "DIR", nargs: 1,
	about: "list the retained snapshots: ID, time, states, bytes written, segments referenced",
	flags: func(fs *flag.FlagSet, o *opts) { jsonFlag(fs, o) },
	run: func(e *env, args []string) int {
		return e.withDB(args[0], func(db *inspect.DB) int {
			snaps := db.Snapshots()
			if e.opts.json {
				return e.printJSON(snaps)
			}
			tw := e.table()
			fmt.Fprintln(tw, "ID\tTIME\tSTATES\tBYTES\tSEGMENTS")
			for _, s := range snaps {
				fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\n", s.ID, fmtTime(s.Time), s.States, s.Bytes, ids(s.Segments))
			}
			tw.Flush()
			return 0
		})
	},
}
