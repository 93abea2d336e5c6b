package replicatest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/instadump/instadump/internal/flags"
	"github.com/instadump/instadump/replica"
)

// Op is a kind of Store operation, as a bit so that several can be chosen
// at once.
type Op uint32

// The kinds of operation a FaultStore sees.
const (
	OpPut Op = 1 << iota
	OpCreate
	OpGet
	OpList
	OpDelete

	// OpUpload is Put and Create: the operations with a body.
	OpUpload = OpPut | OpCreate
	// OpAll is every operation.
	OpAll = OpPut | OpCreate | OpGet | OpList | OpDelete
)

// numOps is how many kinds of operation there are.
const numOps = 5

var opNames = [numOps]string{"put", "create", "get", "list", "delete"}

func (o Op) String() string {
	return flags.Names(o, opNames[:])
}

// Injected errors. Every error a FaultStore injects also wraps ErrInjected.
var (
	// ErrInjected marks every error a FaultStore made up.
	ErrInjected = errors.New("replicatest: injected fault")
	// ErrTransient is a failure that may pass, like an S3 server's 503: it
	// wraps replica.ErrUnavailable.
	ErrTransient = fmt.Errorf("injected server error (503 Service Unavailable): %w", replica.ErrUnavailable)
	// ErrPermanent is a failure that will not pass, like an S3 server's 403
	// for bad credentials: it wraps replica.ErrMisconfigured.
	ErrPermanent = fmt.Errorf("injected access denied (403 Forbidden, check the credentials): %w", replica.ErrMisconfigured)
	// ErrDown is what every operation fails with while the store is down
	// (SetDown): it wraps replica.ErrUnavailable.
	ErrDown = fmt.Errorf("injected connection refused (the server is down): %w", replica.ErrUnavailable)
)

// Mode is how an injected fault fails its operation.
type Mode int

// The modes of a Fault.
const (
	// Before fails the operation before the store sees it.
	Before Mode = iota
	// After runs the operation on the store, where it takes effect, and
	// then fails it: a response lost on the way back. A Create that fails
	// so did create its object.
	After
	// MidBody lets the operation run but cuts its data short with the
	// error: for Put and Create the store's reader of the body fails after
	// CutAt bytes, as when a connection drops during an upload; for Get the
	// returned reader fails after CutAt bytes. For List and Delete, which
	// have no body, it is After.
	MidBody
)

// Fault says which operations of a FaultStore fail, and how.
type Fault struct {
	Ops   Op    // the kinds of operation it counts
	N     int64 // the N-th of them (from 1, counted from Inject) fails
	All   bool  // and so does every later one
	Err   error // the error: ErrTransient, ErrPermanent, replica.ErrExists...
	Mode  Mode  // how
	CutAt int64 // for MidBody: the bytes that get through
}

type fault struct {
	Fault
	seen int64
}

// FaultStore wraps a replica.Store and fails the operations that its
// faults choose, for testing what uses a Store (a shipper, a restore):
// the N-th operation of chosen kinds, a lost response, an upload or
// download cut short, added latency, or a server down until it comes back.
// It counts what it sees. It is safe for concurrent use, and its settings
// may change while operations run. Bodies reach the wrapped store as plain
// io.Readers (whatever else the caller's reader could do).
type FaultStore struct {
	s replica.Store

	down    atomic.Bool
	latency atomic.Int64 // nanoseconds

	mu       sync.Mutex
	faults   []*fault
	count    [numOps]int64
	injected [numOps]int64
}

// NewFaultStore returns s wrapped, with no faults.
func NewFaultStore(s replica.Store) *FaultStore { return &FaultStore{s: s} }

// Inject adds a fault. Several may be active; an operation that more than
// one chooses fails as the first added says.
func (f *FaultStore) Inject(ft Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, &fault{Fault: ft})
}

// Clear removes every fault (not SetDown or SetLatency).
func (f *FaultStore) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = nil
}

// SetDown makes the store down (every operation fails with ErrDown before
// reaching the wrapped store, and so does the next Read of every body
// being uploaded and every object being read) or up again.
func (f *FaultStore) SetDown(down bool) { f.down.Store(down) }

// SetLatency makes every operation wait d before it starts (0 for none).
// An operation whose ctx ends while it waits returns the ctx's error.
func (f *FaultStore) SetLatency(d time.Duration) { f.latency.Store(int64(d)) }

// Count returns how many operations of the kinds ops have started.
func (f *FaultStore) Count(ops Op) int64 { return f.sum(ops, &f.count) }

// Injected returns how many operations of the kinds ops were failed on
// purpose, by a fault or by SetDown.
func (f *FaultStore) Injected(ops Op) int64 { return f.sum(ops, &f.injected) }

func (f *FaultStore) sum(ops Op, a *[numOps]int64) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for i := range a {
		if ops&(1<<i) != 0 {
			n += a[i]
		}
	}
	return n
}

// String implements replica.Store.
func (f *FaultStore) String() string { return "faulty " + f.s.String() }

func opIndex(op Op) int {
	for i := range opNames {
		if op == 1<<i {
			return i
		}
	}
	panic("replicatest: not one operation: " + op.String())
}

// injection is what happens to one operation.
type injection struct {
	err  error // nil: nothing
	mode Mode
	cut  int64
}

// begin counts op, waits out the latency and decides its fate.
func (f *FaultStore) begin(ctx context.Context, op Op, key string) (injection, error) {
	i := opIndex(op)
	f.mu.Lock()
	f.count[i]++
	n := f.count[i]
	var inj injection
	for _, ft := range f.faults {
		if ft.Ops&op == 0 {
			continue
		}
		ft.seen++
		if inj.err == nil && ft.N > 0 && (ft.seen == ft.N || ft.All && ft.seen > ft.N) {
			inj = injection{
				err:  fmt.Errorf("replicatest: %s %q in %s (%s number %d): %w (%w)", op, key, f, op, n, ft.Err, ErrInjected),
				mode: ft.Mode,
				cut:  ft.CutAt,
			}
		}
	}
	f.mu.Unlock()

	if d := time.Duration(f.latency.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return injection{}, fmt.Errorf("replicatest: %s %q in %s: %w", op, key, f, ctx.Err())
		}
	}
	if f.down.Load() {
		f.note(op)
		return injection{}, fmt.Errorf("replicatest: %s %q in %s: %w (%w)", op, key, f, ErrDown, ErrInjected)
	}
	if inj.err != nil && inj.mode == Before {
		f.note(op)
		return injection{}, inj.err
	}
	return inj, nil
}

// note counts an injected failure that happened after begin.
func (f *FaultStore) note(op Op) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.injected[opIndex(op)]++
}

// Put implements replica.Store.
func (f *FaultStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return f.write(ctx, OpPut, key, r, size, f.s.Put)
}

// Create implements replica.Store.
func (f *FaultStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	return f.write(ctx, OpCreate, key, r, size, f.s.Create)
}

func (f *FaultStore) write(ctx context.Context, op Op, key string, r io.Reader, size int64,
	do func(context.Context, string, io.Reader, int64) error) error {
	inj, err := f.begin(ctx, op, key)
	if err != nil {
		return err
	}
	body := &faultReader{f: f, op: op, r: r, cut: -1}
	if inj.err != nil && inj.mode == MidBody {
		body.cut, body.err = inj.cut, inj.err
	}
	err = do(ctx, key, body, size)
	if err == nil && inj.err != nil && inj.mode == After {
		f.note(op)
		return inj.err
	}
	return err
}

// faultReader is a body or an object passing through a FaultStore: it
// fails once cut bytes have passed, or when the store goes down.
type faultReader struct {
	f    *FaultStore
	op   Op
	r    io.Reader
	n    int64
	cut  int64 // -1: no cut
	err  error
	hit  bool
	shut func() error
}

func (b *faultReader) Read(p []byte) (int, error) {
	if b.f.down.Load() {
		if !b.hit {
			b.hit = true
			b.f.note(b.op)
		}
		return 0, fmt.Errorf("replicatest: %s in %s, %d bytes in: %w (%w)", b.op, b.f, b.n, ErrDown, ErrInjected)
	}
	if b.cut >= 0 {
		if b.n >= b.cut {
			if !b.hit {
				b.hit = true
				b.f.note(b.op)
			}
			return 0, b.err
		}
		p = p[:min(int64(len(p)), b.cut-b.n)]
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	return n, err
}

func (b *faultReader) Close() error { return b.shut() }

// Get implements replica.Store.
func (f *FaultStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	inj, err := f.begin(ctx, OpGet, key)
	if err != nil {
		return nil, err
	}
	rc, err := f.s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if inj.err != nil && inj.mode == After {
		rc.Close()
		f.note(OpGet)
		return nil, inj.err
	}
	body := &faultReader{f: f, op: OpGet, r: rc, cut: -1, shut: rc.Close}
	if inj.err != nil && inj.mode == MidBody {
		body.cut, body.err = inj.cut, inj.err
	}
	return body, nil
}

// List implements replica.Store.
func (f *FaultStore) List(ctx context.Context, prefix string) ([]replica.Object, error) {
	inj, err := f.begin(ctx, OpList, prefix)
	if err != nil {
		return nil, err
	}
	objs, err := f.s.List(ctx, prefix)
	if err == nil && inj.err != nil {
		f.note(OpList)
		return nil, inj.err
	}
	return objs, err
}

// Delete implements replica.Store.
func (f *FaultStore) Delete(ctx context.Context, key string) error {
	inj, err := f.begin(ctx, OpDelete, key)
	if err != nil {
		return err
	}
	err = f.s.Delete(ctx, key)
	if err == nil && inj.err != nil {
		f.note(OpDelete)
		return inj.err
	}
	return err
}
