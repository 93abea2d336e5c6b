package main

import (
	"flag"

	"github.com/instadump/instadump/inspect"
)

var cmdDump = &command{
	name: "dump", args: "DIR", nargs: 1,
	about: "print every state of a snapshot as one JSON object, streamed",
	flags: func(fs *flag.FlagSet, o *opts) { snapshotFlag(fs, o) },
	run: func(e *env, args []string) int {
		return e.withDB(args[0], func(db *inspect.DB) int {
			if err := db.WriteDump(e.stdout, e.opts.snapshot); err != nil {
				return e.fail(err)
			}
			return 0
		})
	},
}
