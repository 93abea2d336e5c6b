package main

import (
	"flag"
	"fmt"

	"github.com/instadump/instadump/inspect"
)

var cmdSegments = &command{
	name: "segments", args: "DIR", nargs: 1,
	about: "list every segment file: size, live bytes, dead share, the snapshots referencing it; orphans marked",
	flags: func(fs *flag.FlagSet, o *opts) { jsonFlag(fs, o) },
	run: func(e *env, args []string) int {
		return e.withDB(args[0], func(db *inspect.DB) int {
			segs, err := db.Segments()
			if err != nil {
				return e.fail(err)
			}
			if e.opts.json {
				return e.printJSON(segs)
			}
			tw := e.table()
			fmt.Fprintln(tw, "FILE\tSIZE\tLIVE\tDEAD\tSNAPSHOTS")
			for _, s := range segs {
				refs := "orphan"
				if !s.Orphan {
					refs = ids(s.Snapshots)
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f%%\t%s\n", s.File, s.Size, s.Live, 100*s.DeadShare, refs)
			}
			tw.Flush()
			return 0
		})
	},
}
