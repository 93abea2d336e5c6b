package fuzz

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/instadump/instadump/engine"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/segment"
)

// Crash recovery, proven against a model: every mutating filesystem
// operation of a workload is a crash point; at each, the crashable MemFS
// yields the states a machine could reboot into, and recovery from each
// must give exactly the last acknowledged snapshot or the one in flight.

// crashFigures count what the drivers of crash points and injected
// errors checked.
type crashFigures struct {
	crashPoints, crashStates, injected atomic.Int64
}

// figures counted across the crash tests, printed by TestMain.
var figures struct {
	crashFigures
	flipped, flipDetected, killRounds, killInflight atomic.Int64
	kinds                                           [len(crashKindNames)]atomic.Int64
}

// crashKindNames name the kinds of crash state, as kindOf sorts them.
var crashKindNames = [...]string{"synced data only", "unsynced blocks and names kept in part", "name operations only",
	"writes torn or zeroed", "the last write torn", "the last write zeroed"}

// kindOf sorts a crash state into one of crashKindNames.
func kindOf(o vfs.CrashOptions) int {
	switch {
	case o.ZeroLast:
		return 5
	case o.Torn:
		return 4
	case o.Tear > 0 || o.Zero > 0:
		return 3
	case o.KeepUnsynced > 0:
		return 1
	case o.KeepNames > 0:
		return 2
	}
	return 0
}

// checked counts a crash state of wl whose recovery was checked.
func checked(wl crashWorkload, o vfs.CrashOptions) {
	wl.tally(func(f *crashFigures) { f.crashStates.Add(1) })
	figures.kinds[kindOf(o)].Add(1)
}

const dbDir = "db"

var errCrashed = errors.New("crashed: the machine lost power")

// model is what the tests expect: the contents of the last acknowledged
// snapshot, and of the one in flight.
type model struct {
	acked      map[string]string
	ackedID    uint64
	inflight   map[string]string
	inflightID uint64
	history    map[uint64]map[string]string // every acknowledged snapshot
}

func newModel() *model {
	return &model{acked: map[string]string{}, history: map[uint64]map[string]string{}}
}

// env runs a workload on an FS, keeping the model.
type env struct {
	fs   vfs.FS
	opts engine.Options
	e    *engine.Engine
	m    *model
}

func (w *env) open() error { return w.openAt(dbDir) }

func (w *env) openAt(dir string) error {
	w.close()
	o := w.opts
	o.FS = w.fs
	e, err := engine.Open(dir, o)
	if err != nil {
		return err
	}
	w.e = e
	// An open may finish recovering the in-flight snapshot: learn which.
	if s, ok := e.Current(); ok && w.m.inflight != nil && s.ID == w.m.inflightID {
		w.ack()
	}
	w.m.inflight = nil
	return nil
}

func (w *env) close() {
	if w.e != nil {
		w.e.Close()
		w.e = nil
	}
}

func (w *env) ack() {
	w.m.acked, w.m.ackedID = w.m.inflight, w.m.inflightID
	w.m.history[w.m.ackedID] = w.m.acked
	w.m.inflight = nil
}

// bytesTo is a value to write.
type bytesTo []byte

func (b bytesTo) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(b)
	return int64(n), err
}

// commit commits changes (name → value) and updates the model.
func (w *env) commit(changes map[string]string) error {
	var ch []engine.Write
	for _, name := range sortedKeys(changes) {
		ch = append(ch, engine.Write{Name: name, Kind: engine.ValueState, Parts: []io.WriterTo{bytesTo(changes[name])}})
	}
	next := maps.Clone(w.m.acked)
	maps.Copy(next, changes)
	w.m.inflight, w.m.inflightID = next, w.m.ackedID+1
	if len(changes) == 0 && w.m.ackedID > 0 {
		w.m.inflightID = w.m.ackedID
	}
	s, err := w.e.Commit(ch, nil)
	if err != nil {
		return err
	}
	if s.ID != w.m.inflightID {
		return fmt.Errorf("commit made snapshot %d, model expects %d", s.ID, w.m.inflightID)
	}
	w.ack()
	return nil
}

// readOld reads every retained snapshot and checks it against history.
func (w *env) readOld() error {
	for _, s := range w.e.Snapshots() {
		want, ok := w.m.history[s.ID]
		if !ok {
			continue // acknowledged in an earlier life of the model
		}
		got, err := contents(w.e, s)
		if err != nil {
			return err
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("snapshot %d reads %s, was %s", s.ID, brief(got), brief(want))
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

func contents(e *engine.Engine, s engine.Snapshot) (map[string]string, error) {
	states, ok := e.States(s.ID)
	if !ok {
		return nil, fmt.Errorf("snapshot %d is not retained", s.ID)
	}
	out := map[string]string{}
	for name, ref := range states {
		raw, err := e.Read(ref.Value)
		if err != nil {
			return nil, err
		}
		out[name] = string(raw)
	}
	return out, nil
}

// crasher fails every operation from the at-th mutating one on, as a
// machine that lost power does, and keeps the crash states a reboot could
// find, taken just before that operation.
type crasher struct {
	mem  *vfs.MemFS
	at   int64
	kind []vfs.CrashOptions

	mu      sync.Mutex
	n       int64
	crashed bool
	states  []*vfs.MemFS
}

func (c *crasher) MaybeError(op vfs.Op) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crashed {
		return errCrashed
	}
	if op.Kind&vfs.OpMutating == 0 {
		return nil
	}
	c.n++
	if c.n == c.at {
		c.crashed = true
		for _, k := range c.kind {
			c.states = append(c.states, c.mem.CrashClone(k))
		}
		return errCrashed
	}
	return nil
}

// crashKinds are the crash states checked at each crash point: synced
// data only; shares of unsynced blocks and name operations kept; name
// operations alone; any write torn or zeroed; the last write torn at five
// cut points, or zeroed.
func crashKinds() []vfs.CrashOptions {
	kinds := []vfs.CrashOptions{{}}
	for _, p := range []float64{0.1, 0.5, 1} {
		for seed := int64(1); seed <= 2; seed++ {
			kinds = append(kinds, vfs.CrashOptions{KeepUnsynced: p, KeepNames: p, Seed: seed})
		}
	}
	for seed := int64(3); seed <= 6; seed++ {
		kinds = append(kinds, vfs.CrashOptions{KeepNames: 0.5, Seed: seed})
	}
	for seed := int64(7); seed <= 10; seed++ {
		kinds = append(kinds, vfs.CrashOptions{KeepUnsynced: 0.7, KeepNames: 0.5, Tear: 0.3, Zero: 0.2, Seed: seed})
	}
	for _, cut := range []int{0, 1, 9, 100, 5000} {
		kinds = append(kinds, vfs.CrashOptions{KeepUnsynced: 1, KeepNames: 1, Torn: true, TornLast: cut})
	}
	return append(kinds, vfs.CrashOptions{KeepUnsynced: 1, KeepNames: 1, ZeroLast: true})
}

// crashWorkload is a workload, of States (workload) or of Maps
// (*mapWorkload), as the drivers of crash points and injected errors
// run it.
type crashWorkload interface {
	label() string
	// start runs the workload on fs and returns the run, to look at what
	// it left, and the error it stopped at.
	start(fs vfs.FS) (crashRun, error)
	// clean runs the workload without failures on fs, over mem, and
	// checks what such a run must do.
	clean(mem *vfs.MemFS, fs vfs.FS) error
	// tally adds to each figures the workload counts in.
	tally(add func(f *crashFigures))
}

// crashRun is a run of a crashWorkload, with its model.
type crashRun interface {
	close()
	// recovers checks that fsys, the run's filesystem after a crash,
	// recovers what the model says (and leaves the model as it is).
	recovers(fsys *vfs.MemFS) error
	// isOpen says whether the run stopped with its DB open.
	isOpen() bool
	// resume follows a failure that left the DB open: it finishes what
	// the failure left undone in memory, and checks memory.
	resume() error
	// saveAgain makes one more save and returns its error; the model
	// holds the save in flight only if it started.
	saveAgain() error
	// reopens checks that fsys, the run's filesystem after it closed,
	// opens without failures at the snapshot the model says, with every
	// retained one readable.
	reopens(fsys *vfs.MemFS) error
}

// workload is a sequence of steps on an env; it stops at the first error.
type workload struct {
	name string
	opts engine.Options
	run  func(w *env) error
}

func (wl workload) label() string { return wl.name }

func (wl workload) start(fs vfs.FS) (crashRun, error) {
	w := &env{fs: fs, opts: wl.opts, m: newModel()}
	return w, wl.run(w)
}

func (wl workload) clean(_ *vfs.MemFS, fs vfs.FS) error {
	w, err := wl.start(fs)
	w.close()
	return err
}

func (workload) tally(add func(f *crashFigures)) { add(&figures.crashFigures) }

func (w *env) recovers(fsys *vfs.MemFS) error { return checkRecovery(fsys, w.opts, w.m) }

func (w *env) isOpen() bool { return w.e != nil }

func (w *env) resume() error { return nil }

func (w *env) saveAgain() error {
	inflight, inflightID := w.m.inflight, w.m.inflightID
	err := w.commit(map[string]string{"after-error": "y"})
	if err != nil {
		w.m.inflight, w.m.inflightID = inflight, inflightID // it never started
	}
	return err
}

func (w *env) reopens(fsys *vfs.MemFS) error {
	e, err := engine.Open(dbDir, engine.Options{FS: fsys, Retain: w.opts.Retain, Level: w.opts.Level})
	if err != nil {
		return err
	}
	defer e.Close()
	if err := checkModel(e, w.m); err != nil {
		return err
	}
	for _, s := range e.Snapshots() {
		if _, err := contents(e, s); err != nil {
			return fmt.Errorf("retained snapshot %d: %w", s.ID, err)
		}
	}
	return nil
}

// threeSaves makes a DB retaining three snapshots on a new MemFS, saved
// with change(1), change(2) and change(3), and returns the MemFS and the
// env, its DB left open.
func threeSaves(t testing.TB, change func(i int) map[string]string) (*vfs.MemFS, *env) {
	mem := vfs.NewMem()
	w := &env{fs: mem, opts: engine.Options{Retain: 3}, m: newModel()}
	if err := commits(1, 3, change)(w); err != nil {
		t.Fatal(err)
	}
	return mem, w
}

// countOps runs wl without failures and returns its operations of the
// given kinds.
func countOps(t testing.TB, wl crashWorkload, kinds vfs.OpKind) int64 {
	n := &vfs.Nth{Kinds: kinds}
	mem := vfs.NewMem()
	if err := wl.clean(mem, vfs.WithErrors(mem, n)); err != nil {
		t.Fatalf("%s without failures: %v", wl.label(), err)
	}
	return n.Count()
}

// crashAt runs wl, crashing before its at-th mutating operation, and
// checks recovery from each crash state.
func crashAt(t testing.TB, wl crashWorkload, at int64, kinds []vfs.CrashOptions) {
	mem := vfs.NewMem()
	c := &crasher{mem: mem, at: at, kind: kinds}
	w, err := wl.start(vfs.WithErrors(mem, c))
	w.close()
	if !c.crashed {
		t.Fatalf("%s: no crash at operation %d (err %v)", wl.label(), at, err)
	}
	// A crash in a save's clean-up (garbage collection, rollover) is not
	// the save's failure: the workload may have ended without error.
	if err != nil && !isCrash(err) {
		t.Fatalf("%s crash at %d: unexpected error: %v", wl.label(), at, err)
	}
	wl.tally(func(f *crashFigures) { f.crashPoints.Add(1) })
	for i, st := range c.states {
		if err := w.recovers(st); err != nil {
			t.Fatalf("%s, crash before mutating operation %d, crash state %+v: %v", wl.label(), at, kinds[i], err)
		}
		checked(wl, kinds[i])
	}
}

// crashPoints crashes each workload at every one of its mutating
// operations in turn, checking every crash state of crashKinds.
func crashPoints[W crashWorkload](t *testing.T, wls []W) {
	kinds := crashKinds()
	for _, wl := range wls {
		t.Run(strings.ReplaceAll(wl.label(), " ", "-"), func(t *testing.T) {
			n := countOps(t, wl, vfs.OpMutating)
			for at := int64(1); at <= n; at++ {
				crashAt(t, wl, at, kinds)
			}
			t.Logf("%d crash points, %d crash states each", n, len(kinds))
		})
	}
}

// fuzzCrash is the body of a crash fuzz target: wl crashed at the
// operation and in the crash state the input picks.
func fuzzCrash(t *testing.T, wl crashWorkload, at uint16, kind byte) {
	kinds := crashKinds()
	n := countOps(t, wl, vfs.OpMutating)
	crashAt(t, wl, 1+int64(at)%n, []vfs.CrashOptions{kinds[int(kind)%len(kinds)]})
}

// checkRecovery opens the crashed filesystem and checks I1/I2: exactly
// the last acknowledged snapshot or the in-flight one; no temp files or
// orphans; a further commit and recovery work.
func checkRecovery(fsys *vfs.MemFS, opts engine.Options, m *model) error {
	o := opts
	o.FS = fsys
	e, err := engine.Open(dbDir, o)
	if err != nil {
		return fmt.Errorf("recovery failed: %w", err)
	}
	defer e.Close()
	if err := checkModel(e, m); err != nil {
		return err
	}
	if err := checkLeftovers(fsys, e.LiveBytes()); err != nil {
		return err
	}
	// Life goes on.
	cur, _ := e.Current()
	if _, err := e.Commit([]engine.Write{{Name: "after-crash", Kind: engine.ValueState, Parts: []io.WriterTo{bytesTo("x")}}}, nil); err != nil {
		return fmt.Errorf("commit after recovery: %w", err)
	}
	e.Close()
	e, err = engine.Open(dbDir, o)
	if err != nil {
		return fmt.Errorf("second recovery: %w", err)
	}
	s, _ := e.Current()
	got, err := contents(e, s)
	if err != nil {
		return err
	}
	if s.ID != cur.ID+1 || got["after-crash"] != "x" {
		return fmt.Errorf("after a commit and reopen: snapshot %d (want %d) %s", s.ID, cur.ID+1, brief(got))
	}
	return nil
}

// checkModel checks that the current snapshot is the last acknowledged
// one or the one in flight, and that every other retained snapshot the
// model knows holds what was acknowledged.
func checkModel(e *engine.Engine, m *model) error {
	s, ok := e.Current()
	if !ok {
		if m.ackedID != 0 {
			return fmt.Errorf("no snapshot recovered; snapshot %d was acknowledged", m.ackedID)
		}
		return nil
	}
	got, err := contents(e, s)
	if err != nil {
		return fmt.Errorf("reading recovered snapshot %d: %w", s.ID, err)
	}
	switch {
	case s.ID == m.ackedID && maps.Equal(got, m.acked):
	case m.inflight != nil && s.ID == m.inflightID && maps.Equal(got, m.inflight):
	default:
		return fmt.Errorf("recovered snapshot %d %s; acknowledged %d %s, in flight %d %s", s.ID, brief(got), m.ackedID, brief(m.acked), m.inflightID, brief(m.inflight))
	}
	for _, old := range e.Snapshots() {
		want, known := m.history[old.ID]
		if old.ID == s.ID || !known {
			continue
		}
		got, err := contents(e, old)
		if err != nil {
			return fmt.Errorf("reading retained snapshot %d (current %d): %w", old.ID, s.ID, err)
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("retained snapshot %d reads %s, was acknowledged as %s", old.ID, brief(got), brief(want))
		}
	}
	return nil
}

// brief shows a model's contents with values cut short.
func brief(m map[string]string) string {
	var b strings.Builder
	for _, k := range sortedKeys(m) {
		v := m[k]
		if len(v) > 12 {
			v = fmt.Sprintf("%s…(%d bytes)", v[:12], len(v))
		}
		fmt.Fprintf(&b, "%s:%s ", k, v)
	}
	return "{" + strings.TrimSpace(b.String()) + "}"
}

func val(name string, i, size int) string {
	return fmt.Sprintf("%s=%d;", name, i) + strings.Repeat(string(rune('a'+i%26)), size)
}

// commits is a workload's run: open, then commit change(i) for each i
// from first to last.
func commits(first, last int, change func(i int) map[string]string) func(w *env) error {
	return func(w *env) error {
		if err := w.open(); err != nil {
			return err
		}
		for i := first; i <= last; i++ {
			if err := w.commit(change(i)); err != nil {
				return err
			}
		}
		return nil
	}
}

var workloads = []workload{
	{"one save", engine.Options{}, commits(1, 1, func(i int) map[string]string {
		return map[string]string{"a": val("a", i, 10), "b": val("b", i, 5000)}
	})},
	{"three saves", engine.Options{}, commits(1, 3, func(i int) map[string]string {
		return map[string]string{"a": val("a", i, 100), fmt.Sprint("s", i): val("s", i, 3000)}
	})},
	{"manifest rollover", engine.Options{ManifestLimit: 1}, commits(1, 8, func(i int) map[string]string {
		return map[string]string{"a": val("a", i, 10)}
	})},
	{"gc and compaction", engine.Options{Retain: 1, Level: segment.LevelNone}, commits(0, 6, func(i int) map[string]string {
		if i > 0 {
			return map[string]string{fmt.Sprint("s", i%2): val("s", 10+i, 2000)}
		}
		first := map[string]string{}
		for k := 0; k < 4; k++ {
			first[fmt.Sprint("s", k)] = val("s", k, 2000)
		}
		return first
	})},
	{"reopen and read old snapshots", engine.Options{Retain: 3}, func(w *env) error {
		if err := commits(1, 2, func(i int) map[string]string { return map[string]string{"a": val("a", i, 50)} })(w); err != nil {
			return err
		}
		if err := w.open(); err != nil { // recovery's own writes are crash points too
			return err
		}
		if err := w.readOld(); err != nil {
			return err
		}
		if err := w.commit(map[string]string{"b": val("b", 3, 50)}); err != nil {
			return err
		}
		if err := w.open(); err != nil {
			return err
		}
		return w.readOld()
	}},
}

func TestCrashPointsEnumerated(t *testing.T) { crashPoints(t, workloads) }

// fuzzInput is the fuzzer's bytes, read one at a time.
type fuzzInput []byte

// next returns the next byte, 0 once none are left.
func (in *fuzzInput) next() byte {
	if len(*in) == 0 {
		return 0
	}
	b := (*in)[0]
	*in = (*in)[1:]
	return b
}

// fuzzWorkload decodes a workload from fuzz input: options, then steps
// (commits of up to three changes, reopens, reads of old snapshots, empty
// commits), at most 20.
func fuzzWorkload(data []byte) workload {
	in := fuzzInput(data)
	next := in.next
	flags := next()
	opts := engine.Options{Retain: 1 + int(flags%3)}
	if flags&4 != 0 {
		opts.ManifestLimit = 1
	}
	if flags&8 != 0 {
		opts.Level = segment.LevelNone
	}
	type step struct {
		op      byte
		changes map[string]string
	}
	var steps []step
	for i := 0; len(in) > 0 && i < 20; i++ {
		st := step{op: next() % 5}
		if st.op <= 1 {
			st.changes = map[string]string{}
			for n := 1 + int(next()%3); n > 0; n-- {
				name := fmt.Sprint("s", next()%6)
				st.changes[name] = val(name, i, int(next())*23%4000)
			}
		}
		steps = append(steps, st)
	}
	return workload{name: "fuzzed", opts: opts, run: func(w *env) error {
		if err := w.open(); err != nil {
			return err
		}
		for _, st := range steps {
			var err error
			switch st.op {
			case 0, 1:
				err = w.commit(st.changes)
			case 2:
				err = w.open()
			case 3:
				err = w.readOld()
			case 4:
				err = w.commit(nil)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}}
}

func FuzzCrashRecovery(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 1, 2, 1, 2, 3, 4}, uint16(5), byte(0))
	f.Add([]byte{5, 0, 2, 1, 9, 0, 1, 2, 2, 1, 3, 0, 2, 5, 200, 3}, uint16(40), byte(3))
	f.Add([]byte{14, 1, 1, 0, 255, 1, 1, 1, 255, 1, 1, 2, 255, 0, 1, 3, 255}, uint16(77), byte(9))
	f.Fuzz(func(t *testing.T, data []byte, at uint16, kind byte) {
		fuzzCrash(t, fuzzWorkload(data), at, kind)
	})
}
