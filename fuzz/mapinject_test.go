package fuzz

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/instadump/instadump/internal/vfs"
)

// Injected errors at every operation index of every Map workload: the
// failing call returns the error, memory still holds what the model says
// (a failed save keeps its changes), one more save either works, and
// then holds the failed save's keys too, or fails with the original
// error, as it must after a manifest append or sync failed (sticky until
// reopen); then a power loss, and a reopen without failures, recover
// the model's snapshot key by key and take a save.
func TestCrashMapInjectedErrors(t *testing.T) {
	for _, wl := range mapWorkloads {
		for _, sp := range injectSpecs {
			t.Run(strings.ReplaceAll(wl.name+"/"+sp.name, " ", "-"), func(t *testing.T) {
				count := &vfs.Nth{Kinds: sp.kinds}
				w := newMapEnv(vfs.WithErrors(vfs.NewMem(), count), &wl.spec)
				err := wl.run(w)
				w.close()
				if err != nil {
					t.Fatal(err)
				}
				for n := int64(1); n <= count.Count(); n++ {
					if err := mapInjectAt(wl, sp.kinds, n, sp.err, sp.short); err != nil {
						t.Fatalf("%s at operation %d: %v", sp.name, n, err)
					}
					figures.injected.Add(1)
					mapFigures.injected.Add(1)
				}
			})
		}
	}
}

func (w *mapEnv) registered() bool {
	return len(w.maps) == len(w.spec.maps) && (w.spec.accts == "") == (w.accts == nil) && len(w.ints) == len(w.spec.ints)
}

func mapInjectAt(wl *mapWorkload, kinds vfs.OpKind, n int64, injected error, short bool) error {
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
	w := newMapEnv(vfs.WithErrors(mem, record), &wl.spec)
	err := wl.run(w)
	if inj.Fired() != 1 {
		return fmt.Errorf("the error was injected %d times", inj.Fired())
	}
	if err != nil && !errors.Is(err, injected) {
		return fmt.Errorf("the failing call returned %v, which does not wrap the injected %v", err, injected)
	}
	// A save whose manifest append or sync failed leaves the manifest in
	// an unknown state: every later save must fail until reopen.
	sticky := err != nil && w.db != nil && strings.Contains(failed.Path, "MANIFEST-") && failed.Kind&(vfs.OpWrite|vfs.OpSync) != 0
	if err != nil && w.db != nil {
		if !w.registered() { // a registration failed while opening: finish the open
			if err := w.register(); err != nil {
				return fmt.Errorf("registering again after the failure: %w", err)
			}
			if err := w.learn(); err != nil {
				return err
			}
		}
		// Nothing of the failing call is half done in memory: a failed
		// save keeps its changes, a failed ReloadFrom reloaded nothing.
		if err := w.checkLive("after the failure"); err != nil {
			return err
		}
		// One more save: it works, with the failed save's keys, or fails
		// with the original error.
		inflight, inflightID := w.m.inflight, w.m.inflightID
		w.set(wl.spec.maps[0], "after-error", "y")
		if serr := w.save(); serr != nil {
			if !errors.Is(serr, injected) {
				return fmt.Errorf("a save after the failure returned %v, not the original error", serr)
			}
			w.m.inflight, w.m.inflightID = inflight, inflightID // it never started
		} else if sticky {
			return fmt.Errorf("a save succeeded after the manifest's %s failed; it must fail until reopen", failed.Kind)
		}
	}
	w.close()
	// Power loss now: a failed fsync lost what it had not written, so
	// nothing acknowledged may have relied on a retry.
	for _, k := range []vfs.CrashOptions{{}, {KeepUnsynced: 1, KeepNames: 1}, {KeepUnsynced: 0.5, KeepNames: 0.5, Tear: 0.3, Seed: n}} {
		if err := checkMapRecovery(mem.CrashClone(k), &wl.spec, w.m); err != nil {
			return fmt.Errorf("power loss after the failure, crash state %+v: %w", k, err)
		}
		checked(k)
		mapFigures.crashStates.Add(1)
	}
	// Reopen without failures (a sticky failure ends here): the model's
	// snapshot, key by key, every retained one, and saves work again.
	if err := checkMapRecovery(mem, &wl.spec, w.m); err != nil {
		return fmt.Errorf("reopen after the failure: %w", err)
	}
	return nil
}
