package fuzz

import (
	"testing"

	"github.com/instadump/instadump/engine"
	"github.com/instadump/instadump/internal/vfs"
)

// Engine bugs the stricter crash model found, each as the crash that
// showed it.

// A new DB's first Open creates MANIFEST-000001 and crashes before its
// header is durable, while the name is (any later metadata commit can
// carry it): the directory then holds an empty (or cut short) manifest
// and no CURRENT. That manifest holds no record, so it is the unfinished
// start of a DB that never committed anything; Open used to refuse it as
// a lost CURRENT ("restore CURRENT from a backup") forever after.
func TestRegressFirstManifestNameWithoutHeader(t *testing.T) {
	for _, kind := range []vfs.CrashOptions{
		{KeepNames: 1}, // the name, no data
		{KeepNames: 1, KeepUnsynced: 1, Torn: true, TornLast: 9}, // the header cut short
		{KeepNames: 1, KeepUnsynced: 1, ZeroLast: true},          // the header as zeros
	} {
		mem := vfs.NewMem()
		// Mutating operations of a first Open: mkdir db, sync ., create
		// the manifest, write its header, ...: crash before the write,
		// and before the sync after it.
		for _, at := range []int64{4, 5} {
			c := &crasher{mem: mem, at: at, kind: []vfs.CrashOptions{kind}}
			if _, err := engine.Open(dbDir, engine.Options{FS: vfs.WithErrors(mem, c)}); err == nil {
				t.Fatalf("no crash at operation %d", at)
			}
			for _, st := range c.states {
				if names, _ := st.List(dbDir); len(names) == 0 {
					t.Fatalf("crash at %d, %+v: the manifest's name did not survive, nothing tested", at, kind)
				}
				if err := checkRecovery(st, engine.Options{}, newModel()); err != nil {
					t.Fatalf("crash at %d, %+v: %v", at, kind, err)
				}
			}
			mem = vfs.NewMem()
		}
	}
}

// A new DB in directories that do not exist yet: every directory Open
// makes must be durable before a save is acknowledged. Open used to
// create them without syncing their parents, so a power loss after
// acknowledged saves could lose the whole DB directory.
func TestRegressNewDirectoriesDurable(t *testing.T) {
	for _, dir := range []string{"db", "a/b/db"} {
		mem := vfs.NewMem()
		w := &env{fs: mem, m: newModel()}
		if err := w.openAt(dir); err != nil {
			t.Fatal(err)
		}
		if err := w.commit(map[string]string{"a": "1"}); err != nil {
			t.Fatal(err)
		}
		e, err := engine.Open(dir, engine.Options{FS: mem.CrashClone(vfs.CrashOptions{})})
		if err != nil {
			t.Fatalf("%s: recovery: %v", dir, err)
		}
		if err := checkModel(e, w.m); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		e.Close()
		w.e.Close()
	}
}
