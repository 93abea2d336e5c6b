package main

import (
	"flag"
	"fmt"

	"github.com/instadump/instadump/inspect"
)

var cmdStates = &command{
	name: "states", args: "DIR", nargs: 1,
	about: "list every state of a snapshot: name, kind, encoded and stored size, segments, the snapshot that last changed it; a map's entries and chain",
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
			fmt.Fprintln(tw, "NAME\tKIND\tENCODED\tSTORED\tSEGMENTS\tCHANGED-IN\tENTRIES\tCHAIN")
			for _, s := range states {
				entries, chain := "-", "-"
				if s.Kind == "map" {
					entries, chain = fmt.Sprint(s.Entries), fmt.Sprintf("%d+%d", s.Parts, s.Deltas)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\t%s\t%s\n", s.Name, s.Kind, s.Encoded, s.Stored, ids(s.Segments), s.ChangedIn, entries, chain)
			}
			tw.Flush()
			return 0
		})
	},
}
