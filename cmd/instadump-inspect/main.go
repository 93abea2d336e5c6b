// Command instadump-inspect looks inside an instadump DB directory from
// the shell. It opens the directory read-only (no lock, no repair, no
// writes), so it works while the owning process has it open and saves.
//
//	instadump-inspect COMMAND [flags] DIR [ARGS]
//
// Commands: snapshots, states, get, dump, diff, segments, manifest,
// verify; and, on a replica LOCATION (a directory or s3://BUCKET/PREFIX),
// replica-snapshots, replica-verify, restore. Every listing takes --json;
// every command takes --help. Exit status: 0 success, 1 failure or
// damage (verify: damage found; any other command on a DB whose current
// snapshot or last record is damaged prints what it can of the newest
// intact snapshot, with a WARNING on standard error), 2 usage error.
//
// get and dump write values as JSON without their Go types, from the
// stored msgpack: binary as base64, times as RFC 3339 strings. JSON cannot
// say everything msgpack can, so: invalid UTF-8 in a string is written as
// U+FFFD (the replacement character); a key that is not a string is
// written as its JSON text (42, true, [1,2]), cut at 1 KiB; and so a map
// whose keys are of mixed types (1 and "1"), or long keys alike in their
// first KiB, can give an object with the same key twice.
// A map inside a value has its keys sorted; a Map state's entries come in
// the order stored. The JSON is streamed as it is read: on an error part
// way (damage in a later part of a Map, say) what was written stays
// written, the error goes to standard error and the exit status is 1, so
// check the status before using the output.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/instadump/instadump/inspect"
	"github.com/instadump/instadump/internal/errs"
)

// command is one subcommand: its flags are set up by flags, run does the
// work on the parsed positional arguments.
type command struct {
	name  string
	args  string // positional arguments, for the usage line
	about string
	nargs int
	flags func(fs *flag.FlagSet, o *opts)
	run   func(e *env, args []string) int
}

type opts struct {
	json     bool
	snapshot uint64
	key      string
	keySet   bool // --key was given, perhaps empty
	replica  locationOpts
}

// env is what a command runs with.
type env struct {
	stdout, stderr io.Writer
	opts           opts
	progress       bool // stderr is a terminal
}

var commands = []*command{cmdSnapshots, cmdStates, cmdGet, cmdDump, cmdDiff, cmdSegments, cmdManifest, cmdVerify,
	cmdReplicaSnapshots, cmdReplicaVerify, cmdRestore}

func jsonFlag(fs *flag.FlagSet, o *opts) {
	fs.BoolVar(&o.json, "json", false, "machine-readable JSON output")
}

func snapshotFlag(fs *flag.FlagSet, o *opts) {
	jsonFlag(fs, o)
	fs.Uint64Var(&o.snapshot, "snapshot", 0, "the snapshot `ID` to show (default: the current one)")
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: instadump-inspect COMMAND [flags] DIR [ARGS]")
	fmt.Fprintln(w, "\ncommands:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, c.args, c.about)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nRun instadump-inspect COMMAND --help for a command's flags.")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, isTerminal(os.Stderr)))
}

// run runs the command line args and returns the exit status.
func run(args []string, stdout, stderr io.Writer, terminal bool) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	var cmd *command
	for _, c := range commands {
		if c.name == args[0] {
			cmd = c
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "instadump-inspect: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	e := &env{stdout: stdout, stderr: stderr, progress: terminal}
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if cmd.flags != nil {
		cmd.flags(fs, &e.opts)
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: instadump-inspect %s [flags] %s\n\n%s\n", cmd.name, cmd.args, cmd.about)
		fs.PrintDefaults()
	}
	// What Parse prints (the usage, after an error or for --help) goes to
	// stdout for --help, else to stderr.
	var parsed bytes.Buffer
	fs.SetOutput(&parsed)
	err := fs.Parse(interleave(fs, args[1:]))
	fs.SetOutput(stderr)
	fs.Visit(func(f *flag.Flag) { e.opts.keySet = e.opts.keySet || f.Name == "key" })
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			stdout.Write(parsed.Bytes())
			return 0
		}
		stderr.Write(parsed.Bytes())
		return 2
	}
	if fs.NArg() != cmd.nargs {
		fmt.Fprintf(stderr, "instadump-inspect %s: want %d argument(s) (%s), got %d\n", cmd.name, cmd.nargs, cmd.args, fs.NArg())
		fs.Usage()
		return 2
	}
	return cmd.run(e, fs.Args())
}

// interleave moves flags after positional arguments to the front, so that
// "get DIR NAME --json" works as well as "get --json DIR NAME".
func interleave(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) > 1 && a[0] == '-' {
			flags = append(flags, a)
			name := a[1:]
			if len(name) > 0 && name[0] == '-' {
				name = name[1:]
			}
			if f := fs.Lookup(name); f != nil && i+1 < len(args) {
				if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !bf.IsBoolFlag() {
					flags = append(flags, args[i+1])
					i++
				}
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}

// onDB makes a command's run: it opens the DB directory args[0]
// read-only, prints a warning if it had to fall back, runs f on it and
// closes it, returning f's exit status, or 1 if the directory does not
// open or it had to fall back (damage: what f printed is of an older
// snapshot than the owner's current one).
func onDB(f func(e *env, db *inspect.DB, args []string) int) func(*env, []string) int {
	return func(e *env, args []string) int {
		db, err := inspect.Open(args[0])
		if err != nil {
			return e.fail(err)
		}
		defer db.Close()
		w := db.Warning()
		if w != nil {
			fmt.Fprintf(e.stderr, "instadump-inspect: WARNING: %v\n", w)
		}
		code := f(e, db, args)
		if w != nil && code == 0 {
			code = 1
		}
		return code
	}
}

func (e *env) fail(err error) int {
	fmt.Fprintf(e.stderr, "instadump-inspect: %v\n", err)
	return 1
}

// done returns the exit status of a command that ended with err.
func (e *env) done(err error) int {
	if err != nil {
		return e.fail(err)
	}
	return 0
}

// list prints rows, or the error that came instead of them: as JSON with
// --json, else as a table under header, one line a row.
func list[T any](e *env, rows []T, err error, header string, line func(T) string) int {
	if err != nil {
		return e.fail(err)
	}
	if e.opts.json {
		return e.printJSON(rows)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, line(r))
	}
	tw.Flush()
	return 0
}

// progressBar returns the progress function of a verification, nil
// unless stderr is a terminal (and the output is not JSON), and the
// function that clears the bar when it is over.
func (e *env) progressBar() (progress func(done, total int64), clear func()) {
	if !e.progress || e.opts.json {
		return nil, func() {}
	}
	return func(done, total int64) {
			if total > 0 {
				fmt.Fprintf(e.stderr, "\rverifying: %3d%% of %d MiB", done*100/total, total>>20)
			}
		}, func() {
			fmt.Fprint(e.stderr, "\r\033[K")
		}
}

// verdict reports what a verification found and returns the exit status:
// 0 if nothing, else 1. A lone problem that is not damage, with nothing
// checked (no such directory, not a DB, an unreachable store), is said as
// a failure; damage is one "DAMAGED:" line a problem, or with --json an
// object {"ok", "problems", and extra's fields}. okLine says what is
// intact.
func (e *env) verdict(problems []error, checked int, extra map[string]any, okLine string) int {
	if len(problems) == 1 && checked == 0 && !errors.Is(problems[0], errs.ErrCorrupt) && !errors.Is(problems[0], errs.ErrUnsupportedVersion) {
		return e.fail(problems[0])
	}
	if e.opts.json {
		msgs := []string{}
		for _, p := range problems {
			msgs = append(msgs, p.Error())
		}
		out := map[string]any{"ok": len(problems) == 0, "problems": msgs}
		maps.Copy(out, extra)
		e.printJSON(out)
	} else {
		for _, p := range problems {
			fmt.Fprintf(e.stdout, "DAMAGED: %v\n", p)
		}
		if len(problems) == 0 {
			fmt.Fprintf(e.stdout, "ok: %s\n", okLine)
		}
	}
	if len(problems) > 0 {
		return 1
	}
	return 0
}

func (e *env) printJSON(v any) int {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return e.fail(err)
	}
	return 0
}

func parseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("snapshot ID %q: want a positive integer", s)
	}
	return id, nil
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// ids joins IDs with commas.
func ids(list []uint64) string {
	s := make([]string, len(list))
	for i, id := range list {
		s[i] = strconv.FormatUint(id, 10)
	}
	return strings.Join(s, ",")
}
