package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/instadump/instadump/inspect"
	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/replica"
)

var cmdReplicaVerify = &command{
	name: "replica-verify", args: "LOCATION", nargs: 1,
	about: "check every snapshot in LOCATION as a restore would, downloading every segment, writing nothing; exit 1 if anything is damaged",
	flags: func(fs *flag.FlagSet, o *opts) { jsonFlag(fs, o); locationFlags(fs, o) },
	run: func(e *env, args []string) int {
		return e.withLocation(args[0], func(ctx context.Context, st replica.Store) int {
			var progress func(done, total int64)
			if e.progress && !e.opts.json {
				progress = func(done, total int64) {
					if total > 0 {
						fmt.Fprintf(e.stderr, "\rverifying: %3d%% of %d MiB", done*100/total, total>>20)
					}
				}
			}
			snaps, problems := inspect.VerifyReplica(ctx, st, progress)
			if progress != nil {
				fmt.Fprint(e.stderr, "\r\033[K")
			}
			if len(problems) == 1 && len(snaps) == 0 && !errors.Is(problems[0], errs.ErrCorrupt) && !errors.Is(problems[0], errs.ErrUnsupportedVersion) {
				return e.fail(problems[0]) // not damage: unreachable, refused, not found
			}
			if e.opts.json {
				msgs := []string{}
				for _, p := range problems {
					msgs = append(msgs, p.Error())
				}
				e.printJSON(map[string]any{"ok": len(problems) == 0, "snapshots": snaps, "problems": msgs})
			} else {
				for _, p := range problems {
					fmt.Fprintf(e.stdout, "DAMAGED: %v\n", p)
				}
				if len(problems) == 0 {
					segs := map[uint64]bool{}
					for _, s := range snaps {
						for _, id := range s.Segments {
							segs[id] = true
						}
					}
					fmt.Fprintf(e.stdout, "ok: %s is intact (%d snapshots, %d segments checked)\n", st, len(snaps), len(segs))
				}
			}
			if len(problems) > 0 {
				return 1
			}
			return 0
		})
	},
}
