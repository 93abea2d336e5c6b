package instadump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instadump/instadump/replica"
)

// noStutter fails if msg repeats the package prefix, or says the same
// thing twice (what: a phrase the message must hold once at most).
func noStutter(t *testing.T, what string, err error, once ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	msg := err.Error()
	if strings.Count(msg, "instadump: ") > 1 {
		t.Errorf("%s: the prefix repeats: %s", what, msg)
	}
	for _, s := range once {
		if n := strings.Count(msg, s); n > 1 {
			t.Errorf("%s: %q %d times: %s", what, s, n, msg)
		}
	}
}

// Messages say each thing once: the package prefix, the state's name,
// the type, the length; and a path through a cyclic value is cut short.
func TestMessagesDoNotStutter(t *testing.T) {
	dir := savedDir(t, "x", 1)
	ro := openT(t, dir, WithReadOnly())
	_, err := ro.Save()
	noStutter(t, "Save read-only", err)
	if !errors.Is(err, ErrReadOnly) {
		t.Errorf("Save read-only: %v", err)
	}
	noStutter(t, "Drop read-only", ro.Drop("x"))
	ro.Close()

	db := openT(t, dir)
	_, err = NewState(db, strings.Repeat("n", 1200), 1)
	noStutter(t, "a long name", err, "1200")
	_, err = NewState[chan int](db, "c", nil)
	noStutter(t, "a chan state", err, "chan int")
	_, err = NewState(db, "x", 0, MigrateFrom(0, func(int) (int, error) { return 0, errors.New("boom") }))
	noStutter(t, "a failed migration", err, `"x"`)

	type node struct{ Next *node }
	n := &node{}
	n.Next = n
	newStateT(t, db, "cycle", n)
	_, err = db.Save()
	noStutter(t, "a cyclic value", err)
	if len(err.Error()) > 400 {
		t.Errorf("a cyclic value: a message of %d bytes: %.400s", len(err.Error()), err)
	}
}

// WaitReplicated on a fenced DB names the store once.
func TestWaitReplicatedFencedMessage(t *testing.T) {
	st := replDirStore(t)
	a := openT(t, t.TempDir(), WithReplica(st))
	newStateT(t, a, "c", 0).Set(1)
	replWait(t, a, saveT(t, a).ID)
	b := openT(t, t.TempDir(), WithReplica(st))
	newStateT(t, b, "c", 0).Set(2)
	ctx, cancel := context.WithTimeout(context.Background(), replicaHang)
	defer cancel()
	err := b.WaitReplicated(ctx, saveT(t, b).ID)
	if !errors.Is(err, ErrFenced) {
		t.Fatalf("WaitReplicated fenced: %v", err)
	}
	noStutter(t, "WaitReplicated fenced", err, st.String())
}

// getFails is a store whose reads fail with an error that names the
// store, as the stores of package replica and replica/s3 do.
type getFails struct{ replica.Store }

func (s getFails) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return nil, fmt.Errorf("replica: get %q in %s: the disk is on fire: %w", key, s.Store, replica.ErrMisconfigured)
}

// A store that fails names itself; Restore's message does not repeat it.
func TestRestoreStoreNamedOnce(t *testing.T) {
	st := replDirStore(t)
	db := openT(t, t.TempDir(), WithReplica(st))
	newStateT(t, db, "c", 0).Set(1)
	replWait(t, db, saveT(t, db).ID)
	db.Close()
	_, err := Restore(context.Background(), getFails{st}, filepath.Join(t.TempDir(), "r"))
	if !errors.Is(err, replica.ErrMisconfigured) {
		t.Fatalf("Restore from a failing store: %v", err)
	}
	noStutter(t, "Restore from a failing store", err, st.String())
}
