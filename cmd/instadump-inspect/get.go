package main

import (
	"flag"

	"github.com/instadump/instadump/inspect"
)

var cmdGet = &command{
	name: "get", args: "DIR NAME", nargs: 2,
	about: "print one state's value as JSON",
	flags: func(fs *flag.FlagSet, o *opts) { snapshotFlag(fs, o) },
	run: func(e *env, args []string) int {
		return e.withDB(args[0], func(db *inspect.DB) int {
			v, err := db.Value(e.opts.snapshot, args[1])
			if err != nil {
				return e.fail(err)
			}
			return e.printJSON(v)
		})
	},
}
