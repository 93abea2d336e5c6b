package fuzz

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/instadump/instadump/internal/vfs"
)

// Injected errors at every operation index of every workload: the failing
// call returns the error, nothing panics, later writes after a failed
// sync fail until reopen, a power loss after it keeps every acknowledged
// save (a failed fsync loses its data for good, so a retried one proves
// nothing), and reopening recovers the last acknowledged snapshot (or
// the one in flight).
func TestCrashInjectedErrors(t *testing.T) { injectErrors(t, workloads) }

// injectErrors runs each workload once for every operation of the kinds
// of each of injectSpecs, failing that operation, and checks with
// injectAt what the failure left.
func injectErrors[W crashWorkload](t *testing.T, wls []W) {
	for _, wl := range wls {
		for _, sp := range injectSpecs {
			t.Run(strings.ReplaceAll(wl.label()+"/"+sp.name, " ", "-"), func(t *testing.T) {
				ops := countOps(t, wl, sp.kinds)
				for n := int64(1); n <= ops; n++ {
					if err := injectAt(wl, sp.kinds, n, sp.err, sp.short); err != nil {
						t.Fatalf("%s at operation %d: %v", sp.name, n, err)
					}
					wl.tally(func(f *crashFigures) { f.injected.Add(1) })
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

// injectAt runs wl, failing its n-th operation of the given kinds with
// injected, and checks that the failing call returns the error; that one
// more save, if the DB is still open, works or fails with the original
// error, as it must after a manifest append or sync failed (sticky until
// reopen); that a power loss then recovers what the model says; and that
// a reopen without failures does too.
func injectAt(wl crashWorkload, kinds vfs.OpKind, n int64, injected error, short bool) error {
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
	w, err := wl.start(vfs.WithErrors(mem, record))
	if inj.Fired() != 1 {
		return fmt.Errorf("the error was injected %d times", inj.Fired())
	}
	if err != nil && !errors.Is(err, injected) {
		return fmt.Errorf("the failing call returned %v, which does not wrap the injected %v", err, injected)
	}
	// A save whose manifest append or sync failed leaves the manifest in
	// an unknown state: every later save must fail until reopen.
	sticky := err != nil && w.isOpen() && strings.Contains(failed.Path, "MANIFEST-") && failed.Kind&(vfs.OpWrite|vfs.OpSync) != 0
	if err != nil && w.isOpen() {
		if err := w.resume(); err != nil {
			return err
		}
		// One more save: it works, or fails with the original error.
		if serr := w.saveAgain(); serr != nil {
			if !errors.Is(serr, injected) {
				return fmt.Errorf("a save after the failure returned %v, not the original error", serr)
			}
		} else if sticky {
			return fmt.Errorf("a save succeeded after the manifest's %s failed; it must fail until reopen", failed.Kind)
		}
	}
	w.close()
	// Power loss now: a failed fsync lost what it had not written (the
	// MemFS settles a failed Sync's writes as lost), so nothing that was
	// acknowledged may have relied on a retry.
	for _, k := range []vfs.CrashOptions{{}, {KeepUnsynced: 1, KeepNames: 1}, {KeepUnsynced: 0.5, KeepNames: 0.5, Tear: 0.3, Seed: n}} {
		if err := w.recovers(mem.CrashClone(k)); err != nil {
			return fmt.Errorf("power loss after the failure, crash state %+v: %w", k, err)
		}
		checked(wl, k)
	}
	// Reopen without failures: the last acknowledged snapshot, or the one
	// in flight, and every retained snapshot reads.
	if err := w.reopens(mem); err != nil {
		return fmt.Errorf("reopen after the failure: %w", err)
	}
	return nil
}
