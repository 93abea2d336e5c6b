package replicatest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/instadump/instadump/replica"
	"github.com/instadump/instadump/replica/replicatest"
)

func TestMemStore(t *testing.T) {
	replicatest.TestStore(t, replicatest.NewMemStore())
}

// With no faults a FaultStore is the store it wraps.
func TestFaultStorePassesThrough(t *testing.T) {
	f := replicatest.NewFaultStore(replicatest.NewMemStore())
	replicatest.TestStore(t, f)
	if f.Injected(replicatest.OpAll) != 0 {
		t.Errorf("injected %d faults, want none", f.Injected(replicatest.OpAll))
	}
	if f.Count(replicatest.OpCreate) < 16*20 {
		t.Errorf("counted %d creates, want at least the %d of the race", f.Count(replicatest.OpCreate), 16*20)
	}
}

func put(ctx context.Context, s replica.Store, key, data string) error {
	return s.Put(ctx, key, strings.NewReader(data), int64(len(data)))
}

func read(t *testing.T, s replica.Store, key string) (string, error) {
	t.Helper()
	rc, err := s.Get(t.Context(), key)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

func TestFaultNth(t *testing.T) {
	ctx := t.Context()
	mem := replicatest.NewMemStore()
	f := replicatest.NewFaultStore(mem)
	f.Inject(replicatest.Fault{Ops: replicatest.OpUpload, N: 2, Err: replicatest.ErrTransient})
	if err := put(ctx, f, "a", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.List(ctx, ""); err != nil { // not counted by the fault
		t.Fatal(err)
	}
	err := f.Create(ctx, "b", strings.NewReader("2"), 1)
	if !errors.Is(err, replica.ErrUnavailable) || !errors.Is(err, replicatest.ErrInjected) || !strings.Contains(err.Error(), `create "b"`) {
		t.Fatalf("the second upload: %v, want an injected ErrUnavailable naming it", err)
	}
	if _, err := read(t, mem, "b"); !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("a fault Before reached the store: %v", err)
	}
	if err := put(ctx, f, "c", "3"); err != nil {
		t.Fatalf("the third upload: %v", err)
	}
	if got := f.Count(replicatest.OpUpload); got != 3 {
		t.Errorf("Count(upload) = %d, want 3", got)
	}
	if got := f.Injected(replicatest.OpAll); got != 1 {
		t.Errorf("Injected = %d, want 1", got)
	}

	f.Clear()
	f.Inject(replicatest.Fault{Ops: replicatest.OpGet | replicatest.OpDelete, N: 1, All: true, Err: replicatest.ErrPermanent})
	for range 3 {
		if err := f.Delete(ctx, "a"); !errors.Is(err, replica.ErrMisconfigured) {
			t.Fatalf("Delete with All: %v, want ErrMisconfigured", err)
		}
	}
	if _, err := read(t, f, "a"); !errors.Is(err, replica.ErrMisconfigured) {
		t.Fatalf("Get with All: %v", err)
	}
}

// After: the operation takes effect, but its caller sees the error, as
// when a response is lost; a retried Create then finds its own object.
func TestFaultAfter(t *testing.T) {
	ctx := t.Context()
	mem := replicatest.NewMemStore()
	f := replicatest.NewFaultStore(mem)
	f.Inject(replicatest.Fault{Ops: replicatest.OpCreate, N: 1, Err: replicatest.ErrTransient, Mode: replicatest.After})
	if err := f.Create(ctx, "k", strings.NewReader("v"), 1); !errors.Is(err, replica.ErrUnavailable) {
		t.Fatalf("Create: %v, want the injected error", err)
	}
	if got, err := read(t, mem, "k"); err != nil || got != "v" {
		t.Fatalf("the store holds %q, %v; want the object created", got, err)
	}
	if err := f.Create(ctx, "k", strings.NewReader("v"), 1); !errors.Is(err, replica.ErrExists) {
		t.Fatalf("Create again: %v, want ErrExists", err)
	}
}

// MidBody: an upload's body fails part way, so the store sees a reader
// error and keeps no object; a download fails part way.
func TestFaultMidBody(t *testing.T) {
	ctx := t.Context()
	mem := replicatest.NewMemStore()
	f := replicatest.NewFaultStore(mem)
	data := strings.Repeat("x", 10000)
	f.Inject(replicatest.Fault{Ops: replicatest.OpPut, N: 1, Err: replicatest.ErrTransient, Mode: replicatest.MidBody, CutAt: 4000})
	if err := put(ctx, f, "k", data); !errors.Is(err, replicatest.ErrInjected) {
		t.Fatalf("Put: %v, want the injected error", err)
	}
	if _, err := read(t, mem, "k"); !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("a cut upload left an object: %v", err)
	}
	if err := put(ctx, f, "k", data); err != nil {
		t.Fatal(err)
	}
	f.Inject(replicatest.Fault{Ops: replicatest.OpGet, N: 1, Err: replicatest.ErrTransient, Mode: replicatest.MidBody, CutAt: 3000})
	got, err := read(t, f, "k")
	if !errors.Is(err, replicatest.ErrInjected) || len(got) != 3000 {
		t.Fatalf("a cut download gave %d bytes and %v; want 3000 and the injected error", len(got), err)
	}
	if got, err := read(t, f, "k"); err != nil || got != data {
		t.Fatalf("the next download: %d bytes, %v", len(got), err)
	}
}

// stepReader calls at once it has yielded n bytes.
type stepReader struct {
	r  io.Reader
	n  int
	at func()
}

func (s *stepReader) Read(p []byte) (int, error) {
	if s.n <= 0 && s.at != nil {
		s.at()
		s.at = nil
	}
	p = p[:min(len(p), max(s.n, 1))]
	n, err := s.r.Read(p)
	s.n -= n
	return n, err
}

// SetDown fails everything until the store is up again, uploads in flight
// included.
func TestFaultDown(t *testing.T) {
	ctx := t.Context()
	mem := replicatest.NewMemStore()
	f := replicatest.NewFaultStore(mem)
	data := bytes.Repeat([]byte("y"), 1<<20)
	body := &stepReader{r: bytes.NewReader(data), n: 1000, at: func() { f.SetDown(true) }}
	err := f.Put(ctx, "k", body, int64(len(data)))
	if !errors.Is(err, replicatest.ErrDown) || !errors.Is(err, replica.ErrUnavailable) {
		t.Fatalf("Put while the server went down: %v, want ErrDown", err)
	}
	if _, err := read(t, mem, "k"); !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("an upload cut by the server going down left an object: %v", err)
	}
	for _, err := range []error{
		put(ctx, f, "k", "v"),
		f.Delete(ctx, "k"),
		func() error { _, err := f.List(ctx, ""); return err }(),
		func() error { _, err := f.Get(ctx, "k"); return err }(),
	} {
		if !errors.Is(err, replicatest.ErrDown) {
			t.Fatalf("while down: %v, want ErrDown", err)
		}
	}
	f.SetDown(false)
	if err := put(ctx, f, "k", "v"); err != nil {
		t.Fatalf("once up again: %v", err)
	}
	if got := f.Injected(replicatest.OpAll); got != 5 {
		t.Errorf("Injected = %d, want 5", got)
	}
}

// SetLatency delays every operation, and a ctx that ends meanwhile ends
// the operation with its error.
func TestFaultLatency(t *testing.T) {
	f := replicatest.NewFaultStore(replicatest.NewMemStore())
	f.SetLatency(time.Hour)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- put(ctx, f, "k", "v") }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Put canceled during its latency: %v", err)
	}
	f.SetLatency(time.Millisecond)
	if err := put(t.Context(), f, "k", "v"); err != nil {
		t.Fatal(err)
	}
}
