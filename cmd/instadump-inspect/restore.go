package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/instadump/instadump"
	"github.com/instadump/instadump/replica"
)

var cmdRestore = &command{
	name: "restore", args: "LOCATION DIR", nargs: 2,
	about: "restore the newest snapshot in LOCATION (or --snapshot ID, or the newest saved --before TIME) into DIR, a new directory, every checksum verified",
	flags: func(fs *flag.FlagSet, o *opts) {
		locationFlags(fs, o)
		fs.Uint64Var(&o.snapshot, "snapshot", 0, "restore snapshot `ID` (default: the newest)")
		fs.StringVar(&o.replica.before, "before", "", "restore the newest snapshot saved at or before `TIME` (RFC 3339, as 2026-11-25T08:32:49Z)")
	},
	run: func(e *env, args []string) int {
		var opts []instadump.RestoreOption
		if e.opts.snapshot != 0 {
			opts = append(opts, instadump.RestoreAt(e.opts.snapshot))
		}
		if b := e.opts.replica.before; b != "" {
			t, err := time.Parse(time.RFC3339Nano, b)
			if err != nil {
				fmt.Fprintf(e.stderr, "instadump-inspect restore: --before %q: want a time as 2026-11-25T08:32:49Z\n", b)
				return 2
			}
			if e.opts.snapshot != 0 {
				fmt.Fprintln(e.stderr, "instadump-inspect restore: give --snapshot or --before, not both")
				return 2
			}
			opts = append(opts, instadump.RestoreBefore(t))
		}
		return e.withLocation(args[0], func(ctx context.Context, st replica.Store) int {
			snap, err := instadump.Restore(ctx, st, args[1], opts...)
			if err != nil {
				return e.fail(err)
			}
			fmt.Fprintf(e.stdout, "restored snapshot %d (saved %s, %d states) from %s into %s\n", snap.ID, fmtTime(snap.Time), snap.States, st, args[1])
			return 0
		})
	},
}
