package main

import (
	"flag"
	"fmt"

	"github.com/instadump/instadump/inspect"
)

var cmdStates = &command{
	name: "states", args: "DIR", nargs: 1,
	about: "list every state of a snapshot: name, encoded and stored size, segment, the snapshot that last changed it",
	flags: func(fs *flag.FlagSet, o *opts) { snapshotFlag(fs, o) },
	run: func(e *env, args []string) int {
		return e.withDB(args[0], func(db *inspect.DB) int {
			states, err := db.States(e.opts.snapshot)
			if err != nil {
				return e.fail(err)
			}
			if e.opts.json {
				return e.printJSON(states)
			}
			tw := e.table()
			fmt.Fprintln(tw, "NAME\tENCODED\tSTORED\tSEGMENT\tCHANGED-IN")
			for _, s := range states {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", s.Name, s.Encoded, s.Stored, s.Segment, s.ChangedIn)
			}
			tw.Flush()
			return 0
		})
	},
}
