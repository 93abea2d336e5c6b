package errs

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
)

// Damage found in a replica store, even inside a joined error wrapped by
// fmt.Errorf, gets the replica's hint, not the local directory's.
func TestInReplicaThroughJoin(t *testing.T) {
	err := fmt.Errorf("restoring: %w", errors.Join(Corruptf("obj", 7, "bad"), errors.New("other")))
	got := InReplica(err).Error()
	if strings.Contains(got, HintDamaged) || !strings.Contains(got, HintReplicaDamaged) {
		t.Fatalf("hint in a replica: %s", got)
	}
	if !errors.Is(InReplica(err), ErrCorrupt) {
		t.Fatal("the replica's error no longer matches ErrCorrupt")
	}
}

// A full disk and a reached quota are told apart.
func TestNoSpaceSaysWhich(t *testing.T) {
	for errno, want := range map[syscall.Errno]string{syscall.ENOSPC: "filesystem is full", syscall.EDQUOT: "quota is reached"} {
		err := NoSpace("open", "/db", fmt.Errorf("creating /db/LOCK: %w", errno))
		var ns *NoSpaceError
		if !errors.As(err, &ns) || !errors.Is(err, errno) || !strings.Contains(err.Error(), want) {
			t.Fatalf("%v: %v", errno, err)
		}
	}
}
