package fuzz

import (
	"fmt"
	"testing"
)

// Injected errors at every operation index of every Map workload: the
// failing call returns the error, memory still holds what the model says
// (a failed save keeps its changes), one more save either works, and
// then holds the failed save's keys too, or fails with the original
// error, as it must after a manifest append or sync failed (sticky until
// reopen); then a power loss, and a reopen without failures, recover
// the model's snapshot key by key and take a save.
func TestCrashMapInjectedErrors(t *testing.T) { injectErrors(t, mapWorkloads) }

func (w *mapEnv) registered() bool {
	return len(w.maps) == len(w.spec.maps) && (w.spec.accts == "") == (w.accts == nil) && len(w.ints) == len(w.spec.ints)
}

// resume finishes an open whose registration failed, and checks that
// nothing of the failing call is half done in memory: a failed save
// keeps its changes, a failed ReloadFrom reloaded nothing.
func (w *mapEnv) resume() error {
	if !w.registered() {
		if err := w.register(); err != nil {
			return fmt.Errorf("registering again after the failure: %w", err)
		}
		if err := w.learn(); err != nil {
			return err
		}
	}
	return w.checkLive("after the failure")
}

// saveAgain saves a change to the first Map: if it works, the save holds
// the failed save's keys too.
func (w *mapEnv) saveAgain() error {
	inflight, inflightID := w.m.inflight, w.m.inflightID
	w.set(w.spec.maps[0], "after-error", "y")
	err := w.save()
	if err != nil {
		w.m.inflight, w.m.inflightID = inflight, inflightID // it never started
	}
	return err
}
