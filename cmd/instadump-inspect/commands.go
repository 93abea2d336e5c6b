package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/instadump/instadump"
	"github.com/instadump/instadump/inspect"
	"github.com/instadump/instadump/replica"
)

// The commands that look inside a DB directory.

var cmdSnapshots = &command{
	name: "snapshots", args: "DIR", nargs: 1,
	about: "list the retained snapshots: ID, time, states, bytes written, segments referenced",
	flags: jsonFlag,
	run: onDB(func(e *env, db *inspect.DB, _ []string) int {
		return list(e, db.Snapshots(), nil, "ID\tTIME\tSTATES\tBYTES\tSEGMENTS", func(s inspect.Snapshot) string {
			return fmt.Sprintf("%d\t%s\t%d\t%d\t%s", s.ID, fmtTime(s.Time), s.States, s.Bytes, ids(s.Segments))
		})
	}),
}

var cmdStates = &command{
	name: "states", args: "DIR", nargs: 1,
	about: "list every state of a snapshot: name, kind, encoded and stored size, segments, the snapshot that last changed it; a map's entries and chain",
	flags: snapshotFlag,
	run: onDB(func(e *env, db *inspect.DB, _ []string) int {
		states, err := db.States(e.opts.snapshot)
		return list(e, states, err, "NAME\tKIND\tENCODED\tSTORED\tSEGMENTS\tCHANGED-IN\tENTRIES\tCHAIN", func(s inspect.State) string {
			entries, chain := "-", "-"
			if s.Kind == "map" {
				entries, chain = fmt.Sprint(s.Entries), fmt.Sprintf("%d+%d", s.Parts, s.Deltas)
			}
			return fmt.Sprintf("%s\t%s\t%d\t%d\t%s\t%d\t%s\t%s", s.Name, s.Kind, s.Encoded, s.Stored, ids(s.Segments), s.ChangedIn, entries, chain)
		})
	}),
}

var cmdGet = &command{
	name: "get", args: "DIR NAME", nargs: 2,
	about: "print one state's value as JSON, or with --key one entry of a map state",
	flags: func(fs *flag.FlagSet, o *opts) {
		snapshotFlag(fs, o)
		fs.StringVar(&o.key, "key", "", "print only the value under `KEY` of a map state (a string key, as is or as a JSON string; another key as JSON: 42, {\"Org\":\"a\",\"ID\":7}, members in any order)")
	},
	run: onDB(func(e *env, db *inspect.DB, args []string) int {
		if e.opts.keySet {
			return e.done(db.WriteKeyJSON(e.stdout, e.opts.snapshot, args[1], e.opts.key))
		}
		return e.done(db.WriteJSON(e.stdout, e.opts.snapshot, args[1]))
	}),
}

var cmdDump = &command{
	name: "dump", args: "DIR", nargs: 1,
	about: "print every state of a snapshot as one JSON object, streamed",
	flags: snapshotFlag,
	run: onDB(func(e *env, db *inspect.DB, _ []string) int {
		return e.done(db.WriteDump(e.stdout, e.opts.snapshot))
	}),
}

var cmdDiff = &command{
	name: "diff", args: "DIR ID1 ID2", nargs: 3,
	about: "list the states that differ between two snapshots",
	flags: jsonFlag,
	run: func(e *env, args []string) int {
		var id [2]uint64
		for i, s := range args[1:] {
			var err error
			if id[i], err = parseID(s); err != nil {
				fmt.Fprintf(e.stderr, "instadump-inspect diff: %v\n", err)
				return 2
			}
		}
		return onDB(func(e *env, db *inspect.DB, _ []string) int {
			diffs, err := db.Diff(id[0], id[1])
			return list(e, diffs, err, "NAME\tCHANGE", func(d inspect.Difference) string { return d.Name + "\t" + d.Change })
		})(e, args)
	},
}

var cmdSegments = &command{
	name: "segments", args: "DIR", nargs: 1,
	about: "list every segment file: size, live bytes, dead share, the snapshots referencing it; orphans marked",
	flags: jsonFlag,
	run: onDB(func(e *env, db *inspect.DB, _ []string) int {
		segs, err := db.Segments()
		return list(e, segs, err, "FILE\tSIZE\tLIVE\tDEAD\tSNAPSHOTS", func(s inspect.Segment) string {
			refs := "orphan"
			if !s.Orphan {
				refs = ids(s.Snapshots)
			}
			return fmt.Sprintf("%s\t%d\t%d\t%.0f%%\t%s", s.File, s.Size, s.Live, 100*s.DeadShare, refs)
		})
	}),
}

var cmdManifest = &command{
	name: "manifest", args: "DIR", nargs: 1,
	about: "list the live manifest's records, one a line",
	flags: jsonFlag,
	run: onDB(func(e *env, db *inspect.DB, _ []string) int {
		m := db.Manifest()
		if e.opts.json {
			var torn, damaged string
			if m.TornTail != nil {
				torn = m.TornTail.Error()
			}
			out := map[string]any{"file": m.Path, "records": m.Records, "torn_tail": torn}
			if m.DamagedTail != nil {
				damaged = m.DamagedTail.Error()
				out["damaged_tail"] = damaged
			}
			return e.printJSON(out)
		}
		list(e, m.Records, nil, "OFFSET\tKIND\tSNAPSHOT\tTIME\tSTATES\tREMOVED\tBYTES", func(r inspect.Record) string {
			return fmt.Sprintf("%d\t%s\t%d\t%s\t%d\t%d\t%d", r.Offset, r.Kind, r.Snapshot, fmtTime(r.Time), r.States, r.Removed, r.Bytes)
		})
		if m.TornTail != nil {
			fmt.Fprintf(e.stdout, "torn tail (a save that crashed before its commit; ignored): %v\n", m.TornTail)
		}
		if m.DamagedTail != nil {
			fmt.Fprintf(e.stdout, "DAMAGED last record (not loaded; run verify): %v\n", m.DamagedTail)
		}
		return 0
	}),
}

var cmdVerify = &command{
	name: "verify", args: "DIR", nargs: 1,
	about: "check every checksum of every file in use; exit 1 if anything is damaged",
	flags: jsonFlag,
	run: func(e *env, args []string) int {
		progress, clear := e.progressBar()
		problems := inspect.Verify(args[0], progress)
		clear()
		return e.verdict(problems, 0, nil, args[0]+" is intact")
	},
}

// The commands that read a replica LOCATION.

var cmdReplicaSnapshots = &command{
	name: "replica-snapshots", args: "LOCATION", nargs: 1,
	about: "list the snapshots a DB replicated to LOCATION (a directory or s3://BUCKET/PREFIX): ID, time, lineage, commit object, states, bytes, whether it restores",
	flags: func(fs *flag.FlagSet, o *opts) { jsonFlag(fs, o); locationFlags(fs, o) },
	run: onLocation(func(ctx context.Context, e *env, st replica.Store, _ []string) int {
		snaps, err := inspect.ReplicaSnapshots(ctx, st)
		return list(e, snaps, err, "ID\tTIME\tLINEAGE\tKIND\tSTATES\tBYTES\tSEGMENTS\tRESTORES", func(s inspect.ReplicaSnapshot) string {
			restores := "yes"
			if s.Problem != "" {
				restores = "NO: " + s.Problem
			}
			return fmt.Sprintf("%d\t%s\t%.8s\t%s\t%d\t%d\t%s\t%s", s.ID, fmtTime(s.Time), s.Lineage, s.Kind, s.States, s.Bytes, ids(s.Segments), restores)
		})
	}),
}

var cmdReplicaVerify = &command{
	name: "replica-verify", args: "LOCATION", nargs: 1,
	about: "check every snapshot in LOCATION as a restore would, downloading every segment, writing nothing; exit 1 if anything is damaged",
	flags: func(fs *flag.FlagSet, o *opts) { jsonFlag(fs, o); locationFlags(fs, o) },
	run: onLocation(func(ctx context.Context, e *env, st replica.Store, _ []string) int {
		progress, clear := e.progressBar()
		snaps, problems := inspect.VerifyReplica(ctx, st, progress)
		clear()
		segs := map[uint64]bool{}
		for _, s := range snaps {
			for _, id := range s.Segments {
				segs[id] = true
			}
		}
		ok := fmt.Sprintf("%s is intact (%d snapshots, %d segments checked)", st, len(snaps), len(segs))
		return e.verdict(problems, len(snaps), map[string]any{"snapshots": snaps}, ok)
	}),
}

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
		return onLocation(func(ctx context.Context, e *env, st replica.Store, args []string) int {
			snap, err := instadump.Restore(ctx, st, args[1], opts...)
			if err != nil {
				return e.fail(err)
			}
			fmt.Fprintf(e.stdout, "restored snapshot %d (saved %s, %d states) from %s into %s\n", snap.ID, fmtTime(snap.Time), snap.States, st, args[1])
			return 0
		})(e, args)
	},
}
