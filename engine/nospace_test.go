package engine

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/instadump/instadump/internal/vfs"
)

// Open read-write on a full disk says so: the filesystem is full, in
// which directory, and that freeing space or a read-only open helps.
// Every write Open may do fails: creating the directory, the lock, a new
// manifest and CURRENT, a rollover of the manifest.
func TestOpenNoSpace(t *testing.T) {
	for _, existing := range []bool{false, true} {
		m := vfs.NewMem()
		if existing {
			e := open(t, m, Options{})
			commit(t, e, "a", "1")
			e.Close()
		}
		for n := int64(1); ; n++ {
			inj := &vfs.Nth{Kinds: vfs.OpMutating | vfs.OpLock, N: n, Err: syscall.ENOSPC}
			e, err := Open("/db", Options{FS: vfs.WithErrors(m.CrashClone(vfs.CrashOptions{}), inj)})
			if inj.Fired() == 0 {
				if err != nil {
					t.Fatalf("existing=%v: open with no failure: %v", existing, err)
				}
				e.Close()
				break
			}
			if err == nil {
				e.Close()
				continue // the failed operation was not needed to open
			}
			msg := err.Error()
			if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(msg, "full") || !strings.Contains(msg, "/db") || !strings.Contains(msg, "WithReadOnly") || !strings.Contains(msg, "free") {
				t.Errorf("existing=%v, failing operation %d: %v", existing, n, err)
			}
		}
	}
}
