package instadump

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"sync"

	"github.com/instadump/instadump/internal/codec"
)

// A Save captures, under the cut lock, what each changed state holds (a
// pointer for a State, the changed keys for a Map), then encodes outside
// it: each part it writes is a job, which the engine asks to write itself
// into the segment, in order. A helper goroutine encodes the jobs after
// the current one into buffers on the spare core, within a budget of the
// memory those buffers pin; a writer that must see a captured value
// settled before it changes it (Update, GetIn) encodes it first.

// A job is one part of what a Save writes: a State's value, a Map's
// delta, or one part of a Map's base.
type job struct {
	state  string                  // for errors
	encode func(w io.Writer) error // writes the encoding to w
	once   sync.Once
	buf    chunkBuf // encoded ahead
	direct bool     // encoded straight into the segment
	err    error
}

func newJob(state string, encode func(io.Writer) error) *job {
	return &job{state: state, encode: encode}
}

// do encodes into w, turning a panic of the encoder (a MarshalMsgpack,
// say) into an error that names the state.
func (j *job) do(w io.Writer) {
	defer func() {
		if r := recover(); r != nil {
			j.err = fmt.Errorf("encoding state %s panicked: %v\n%s", quote(j.state), r, debug.Stack())
		}
	}()
	if err := j.encode(w); err != nil {
		j.err = fmt.Errorf("cannot encode state %s: %w", quote(j.state), err)
		if errors.Is(err, codec.ErrNeverLoads) {
			j.err = unstorable{j.err}
		}
	}
}

// unstorable is the error of a value that would save but never load (a
// map key that would not load back, a marshaller's output that is not
// one msgpack value): it matches ErrUnsupportedType. Other encoding
// failures do not (a map changed while it was encoded is the program's
// doing, not its type's).
type unstorable struct{ error }

func (e unstorable) Is(target error) bool { return target == ErrUnsupportedType }
func (e unstorable) Unwrap() error        { return e.error }

// run encodes the job into its buffer, unless it is encoded already.
func (j *job) run() { j.once.Do(func() { j.do(&j.buf) }) }

// errUnwritten is a job's error once its Save ended without writing it.
var errUnwritten = errors.New("the Save ended before this part was written")

// close frees the job's buffer once its Save is over. A writer's barrier
// that runs the job now or later (it took the job before the Save
// settled) encodes nothing: the once is spent, or close waits for the
// encoding under way to end before it frees.
func (j *job) close() {
	j.once.Do(func() { j.err = errUnwritten })
	j.buf.free()
}

// WriteTo writes the encoding to w, encoding straight into w if no one
// encoded it ahead.
func (j *job) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	j.once.Do(func() {
		j.direct = true
		j.do(cw)
	})
	if !j.direct && j.err == nil {
		j.err = j.buf.writeTo(cw)
	}
	j.buf.free()
	return cw.n, j.err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// aheadBudget bounds the memory that buffers encoded ahead pin.
const aheadBudget = 8 << 20

// encodeAhead encodes jobs into buffers on another core while the engine
// writes the current one, pinning at most aheadBudget bytes of buffers
// (and one job past it).
type encodeAhead struct {
	jobs    []*job
	mu      sync.Mutex
	cond    *sync.Cond
	pinned  int64   // bytes of buffers encoded ahead and not yet written
	counted []int64 // what each job counts in pinned
	at      int     // jobs before it were started by the engine
	quit    bool
	done    chan struct{}
}

func startEncodeAhead(jobs []*job) *encodeAhead {
	a := &encodeAhead{jobs: jobs, counted: make([]int64, len(jobs)), done: make(chan struct{})}
	a.cond = sync.NewCond(&a.mu)
	if len(jobs) < 2 || runtime.GOMAXPROCS(0) < 2 {
		close(a.done)
		return a
	}
	go func() {
		defer close(a.done)
		for i := 1; i < len(jobs); i++ {
			a.mu.Lock()
			for !a.quit && i > a.at && a.pinned > aheadBudget {
				a.cond.Wait()
			}
			quit, behind := a.quit, i < a.at
			a.mu.Unlock()
			if quit {
				return
			}
			if behind {
				continue // written already
			}
			jobs[i].run()
			a.mu.Lock()
			if i >= a.at { // not started yet: its buffers stay pinned until written
				a.counted[i] = jobs[i].buf.capacity()
				a.pinned += a.counted[i]
			}
			a.mu.Unlock()
		}
	}()
	return a
}

// parts returns the jobs as the engine writes them, in order.
func (a *encodeAhead) parts() []io.WriterTo {
	ps := make([]aheadPart, len(a.jobs))
	out := make([]io.WriterTo, len(a.jobs))
	for i := range ps {
		ps[i] = aheadPart{a, i}
		out[i] = &ps[i]
	}
	return out
}

type aheadPart struct {
	a *encodeAhead
	i int
}

func (p aheadPart) WriteTo(w io.Writer) (int64, error) {
	a := p.a
	a.mu.Lock()
	a.at = p.i + 1
	a.mu.Unlock()
	n, err := a.jobs[p.i].WriteTo(w)
	a.mu.Lock()
	a.pinned -= a.counted[p.i]
	a.counted[p.i] = 0
	a.cond.Broadcast()
	a.mu.Unlock()
	return n, err
}

// stop ends the helper and frees what it encoded and nobody wrote.
func (a *encodeAhead) stop() {
	a.mu.Lock()
	a.quit = true
	a.cond.Broadcast()
	a.mu.Unlock()
	<-a.done
	for _, j := range a.jobs {
		j.close()
	}
}

// chunkBuf is an in-memory buffer of chunks from pools: it never copies
// what it holds to grow, and its chunks grow from 4 KiB to 1 MiB, so a
// small value pins a small buffer.
type chunkBuf struct {
	chunks [][]byte
}

var chunkSizes = [...]int{4 << 10, 64 << 10, 1 << 20}

var chunkPools [len(chunkSizes)]sync.Pool

func chunkClass(n int) int {
	for i, s := range chunkSizes {
		if n == s {
			return i
		}
	}
	return -1
}

func (b *chunkBuf) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if len(b.chunks) == 0 || len(b.chunks[len(b.chunks)-1]) == cap(b.chunks[len(b.chunks)-1]) {
			class := min(len(b.chunks), len(chunkSizes)-1)
			c, ok := chunkPools[class].Get().(*[]byte)
			if !ok {
				s := make([]byte, 0, chunkSizes[class])
				c = &s
			}
			b.chunks = append(b.chunks, (*c)[:0])
		}
		last := &b.chunks[len(b.chunks)-1]
		k := copy((*last)[len(*last):cap(*last)], p)
		*last = (*last)[:len(*last)+k]
		p = p[k:]
	}
	return n, nil
}

// capacity returns the bytes the buffer pins.
func (b *chunkBuf) capacity() int64 {
	var n int64
	for _, c := range b.chunks {
		n += int64(cap(c))
	}
	return n
}

// writeTo writes the chunks to w.
func (b *chunkBuf) writeTo(w io.Writer) error {
	for _, c := range b.chunks {
		if _, err := w.Write(c); err != nil {
			return err
		}
	}
	return nil
}

// free gives the chunks back to their pools.
func (b *chunkBuf) free() {
	for _, c := range b.chunks {
		if class := chunkClass(cap(c)); class >= 0 {
			chunkPools[class].Put(&c)
		}
	}
	b.chunks = nil
}
