package main

import (
	"flag"
	"fmt"

	"github.com/instadump/instadump/inspect"
)

var cmdManifest = &command{
	name: "manifest", args: "DIR", nargs: 1,
	about: "list the live manifest's records, one a line",
	flags: func(fs *flag.FlagSet, o *opts) { jsonFlag(fs, o) },
	run: func(e *env, args []string) int {
		return e.withDB(args[0], func(db *inspect.DB) int {
			m := db.Manifest()
			if e.opts.json {
				var torn string
				if m.TornTail != nil {
					torn = m.TornTail.Error()
				}
				return e.printJSON(map[string]any{"file": m.Path, "records": m.Records, "torn_tail": torn})
			}
			tw := e.table()
			fmt.Fprintln(tw, "OFFSET\tKIND\tSNAPSHOT\tTIME\tSTATES\tREMOVED\tBYTES")
			for _, r := range m.Records {
				fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%d\t%d\t%d\n", r.Offset, r.Kind, r.Snapshot, fmtTime(r.Time), r.States, r.Removed, r.Bytes)
			}
			tw.Flush()
			if m.TornTail != nil {
				fmt.Fprintf(e.stdout, "torn tail (a save that crashed before its commit; ignored): %v\n", m.TornTail)
			}
			return 0
		})
	},
}
