package main

import (
	"flag"

	"github.com/instadump/instadump/inspect"
)

var cmdGet = &command{
	name: "get", args: "DIR NAME", nargs: 2,
	about: "print one state's value as JSON, or with --key one entry of a map state",
	flags: func(fs *flag.FlagSet, o *opts) {
		snapshotFlag(fs, o)
		fs.StringVar(&o.key, "key", "", "print only the value under `KEY` of a map state (a string key, or the JSON text of another: 42)")
	},
	run: func(e *env, args []string) int {
		return e.withDB(args[0], func(db *inspect.DB) int {
			var err error
			if e.opts.keySet {
				err = db.WriteKeyJSON(e.stdout, e.opts.snapshot, args[1], e.opts.key)
			} else {
				err = db.WriteJSON(e.stdout, e.opts.snapshot, args[1])
			}
			if err != nil {
				return e.fail(err)
			}
			return 0
		})
	},
}
