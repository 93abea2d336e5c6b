package fuzz

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/instadump/instadump/engine"
	"github.com/instadump/instadump/internal/vfs"
)

// Injected errors at every operation index of every workload: the failing
// call returns the error, nothing panics, later writes after a failed
// sync fail until reopen, a power loss after it keeps every acknowledged
// save (a failed fsync loses its data for good, so a retried one proves
// nothing), and reopening recovers the last acknowledged snapshot (or
// the one in flight).
func TestCrashInjectedErrors(t *testing.T) {
	for _, wl := range workloads {
		for _, sp := range injectSpecs {
			t.Run(strings.ReplaceAll(wl.name+"/"+sp.name, " ", "-"), func(t *testing.T) {
				count := &vfs.Nth{Kinds: sp.kinds}
				w := &env{fs: vfs.WithErrors(vfs.NewMem(), count), opts: wl.opts, m: newModel()}
				if err := wl.run(w); err != nil {
					t.Fatal(err)
				}
				w.e.Close()
				for n := int64(1); n <= count.Count(); n++ {
					if err := injectAt(wl, sp.kinds, n, sp.err, sp.short); err != nil {
						t.Fatalf("%s at operation %d: %v", sp.name, n, err)
					}
					figures.injected.Add(1)
				}
			})
		}
	}
}

// injectSpecs are the errors injected at every operation index of their
// kinds.
var injectSpecs = []struct {
	name  string
	kinds vfs.OpKind
	err   error
	short bool
}{
	{"short write ENOSPC", vfs.OpWrite, vfs.ENOSPC, true},
	{"write EIO", vfs.OpWrite, vfs.EIO, false},
	{"sync EIO", vfs.OpSync, vfs.EIO, false},
	{"dir sync EIO", vfs.OpSyncDir, vfs.EIO, false},
	{"rename EIO", vfs.OpRename, vfs.EIO, false},
	{"read EIO", vfs.OpRead, vfs.EIO, false},
	{"create ENOSPC", vfs.OpCreate, vfs.ENOSPC, false},
	{"remove EIO", vfs.OpRemove, vfs.EIO, false},
}

func injectAt(wl workload, kinds vfs.OpKind, n int64, injected error, short bool) error {
	mem := vfs.NewMem()
	inj := &vfs.Nth{Kinds: kinds, N: n, Err: injected, Short: short}
	var failed vfs.Op
	record := vfs.InjectorFunc(func(op vfs.Op) error {
		err := inj.MaybeError(op)
		if err != nil {
			failed = op
		}
		return err
	})
	w := &env{fs: vfs.WithErrors(mem, record), opts: wl.opts, m: newModel()}
	err := wl.run(w)
	if inj.Fired() != 1 {
		return fmt.Errorf("the error was injected %d times", inj.Fired())
	}
	if err != nil && !errors.Is(err, injected) {
		return fmt.Errorf("the failing call returned %v, which does not wrap the injected %v", err, injected)
	}
	// A save whose manifest append or sync failed leaves the manifest in
	// an unknown state: every later save must fail until reopen.
	sticky := err != nil && w.e != nil && strings.Contains(failed.Path, "MANIFEST-") && failed.Kind&(vfs.OpWrite|vfs.OpSync) != 0
	if err != nil && w.e != nil {
		// One more save: it works, or fails with the original error.
		inflight, inflightID := w.m.inflight, w.m.inflightID
		if cerr := w.commit(map[string]string{"after-error": "y"}); cerr != nil {
			if !errors.Is(cerr, injected) {
				return fmt.Errorf("a save after the failure returned %v, not the original error", cerr)
			}
			w.m.inflight, w.m.inflightID = inflight, inflightID // it never started
		} else if sticky {
			return fmt.Errorf("a save succeeded after the manifest's %s failed; it must fail until reopen", failed.Kind)
		}
	}
	if w.e != nil {
		w.e.Close()
	}
	// Power loss now: a failed fsync lost what it had not written (the
	// MemFS settles a failed Sync's writes as lost), so nothing that was
	// acknowledged may have relied on a retry.
	for _, k := range []vfs.CrashOptions{{}, {KeepUnsynced: 1, KeepNames: 1}, {KeepUnsynced: 0.5, KeepNames: 0.5, Tear: 0.3, Seed: n}} {
		if err := checkRecovery(mem.CrashClone(k), wl.opts, w.m); err != nil {
			return fmt.Errorf("power loss after the failure, crash state %+v: %w", k, err)
		}
		checked(k)
	}
	// Reopen without failures: the last acknowledged snapshot, or the one
	// in flight, and every retained snapshot reads.
	e, err := engine.Open(dbDir, engine.Options{FS: mem, Retain: wl.opts.Retain, Level: wl.opts.Level})
	if err != nil {
		return fmt.Errorf("reopen after the failure: %w", err)
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
