package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/instadump/instadump/inspect"
	"github.com/instadump/instadump/replica"
)

var cmdReplicaSnapshots = &command{
	name: "replica-snapshots", args: "LOCATION", nargs: 1,
	about: "list the snapshots a DB replicated to LOCATION (a directory or s3://BUCKET/PREFIX): ID, time, lineage, commit object, states, bytes, whether it restores",
	flags: func(fs *flag.FlagSet, o *opts) { jsonFlag(fs, o); locationFlags(fs, o) },
	run: func(e *env, args []string) int {
		return e.withLocation(args[0], func(ctx context.Context, st replica.Store) int {
			snaps, err := inspect.ReplicaSnapshots(ctx, st)
			if err != nil {
				return e.fail(err)
			}
			if e.opts.json {
				return e.printJSON(snaps)
			}
			tw := e.table()
			fmt.Fprintln(tw, "ID\tTIME\tLINEAGE\tKIND\tSTATES\tBYTES\tSEGMENTS\tRESTORES")
			for _, s := range snaps {
				restores := "yes"
				if s.Problem != "" {
					restores = "NO: " + s.Problem
				}
				fmt.Fprintf(tw, "%d\t%s\t%.8s\t%s\t%d\t%d\t%s\t%s\n", s.ID, fmtTime(s.Time), s.Lineage, s.Kind, s.States, s.Bytes, ids(s.Segments), restores)
			}
			tw.Flush()
			return 0
		})
	},
}
