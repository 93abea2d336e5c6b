package main

import "flag"

var cmdDump = &command{
	name: "dump", args: "DIR", nargs: 1,
	about: "print every state of a snapshot as one JSON object",
	flags: func(fs *flag.FlagSet, o *opts) { snapshotFlag(fs, o) },
	run: func(e *env, args []string) int {
		db, ok := e.open(args[0])
		if !ok {
			return 1
		}
		defer db.Close()
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
	},
}
