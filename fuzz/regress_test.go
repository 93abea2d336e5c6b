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
