package main

import (
	"flag"

	"github.com/instadump/instadump/inspect"
)

var cmdDump = &command{
	name: "dump", args: "DIR", nargs: 1,
	about: "print every state of a snapshot as one JSON object",
	flags: func(fs *flag.FlagSet, o *opts) { snapshotFlag(fs, o) },
	run: func(e *env, args []string) int {
		return e.withDB(args[0], func(db *inspect.DB) int {
			states, err := db.States(e.opts.snapshot)
			if err != nil {
				return e.fail(err)
			}
			out := make(map[string]any, len(states))
			for _, s := range states {
				if out[s.Name], err = db.Value(e.opts.snapshot, s.Name); err != nil {
					return e.fail(err)
				}
			}
			return e.printJSON(out)
		})
	},
}
