package main

import (
	"errors"
	"flag"
	"fmt"

	"github.com/instadump/instadump/inspect"
	"github.com/instadump/instadump/internal/errs"
)

var cmdVerify = &command{
	name: "verify", args: "DIR", nargs: 1,
	about: "check every checksum of every file in use; exit 1 if anything is damaged",
	flags: func(fs *flag.FlagSet, o *opts) { jsonFlag(fs, o) },
	run: func(e *env, args []string) int {
		var progress func(done, total int64)
		if e.progress && !e.opts.json {
			progress = func(done, total int64) {
				if total > 0 {
					fmt.Fprintf(e.stderr, "\rverifying: %3d%% of %d MiB", done*100/total, total>>20)
				}
			}
		}
		problems := inspect.Verify(args[0], progress)
		if progress != nil {
			fmt.Fprint(e.stderr, "\r\033[K")
		}
		if len(problems) == 1 && !errors.Is(problems[0], errs.ErrCorrupt) && !errors.Is(problems[0], errs.ErrUnsupportedVersion) {
			return e.fail(problems[0]) // not damage: no such directory, not a DB, no permission
		}
		if e.opts.json {
			msgs := []string{}
			for _, p := range problems {
				msgs = append(msgs, p.Error())
			}
			e.printJSON(map[string]any{"ok": len(problems) == 0, "problems": msgs})
		} else {
			for _, p := range problems {
				fmt.Fprintf(e.stdout, "DAMAGED: %v\n", p)
			}
			if len(problems) == 0 {
				fmt.Fprintf(e.stdout, "ok: %s is intact\n", args[0])
			}
		}
		if len(problems) > 0 {
			return 1
		}
		return 0
	},
}
