package codec

import (
	"errors"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Large slices and maps are encoded and decoded on every core. msgpack
// arrays and maps are a header followed by their elements, so batches of
// elements encoded apart concatenate, in order, to the bytes one
// goroutine would write. Decoding first finds the element boundaries
// with Skip (no allocation, no recursion) on one goroutine, while the
// workers decode the ranges found so far.
//
// Invariants: workers never touch the caller's encoder or decoder; every
// worker recovers its own panics into errors; the first error in element
// order is the one returned, and malformed input is decoded again on one
// goroutine so that it fails where and as it would there; all goroutines
// have finished when a parallel call returns.

// parMinElems is the smallest slice or map handled in parallel.
const parMinElems = 1 << 15

// parBatch is the number of elements in one batch.
const parBatch = 4096

// parallelOff turns the parallel paths off (benchmarks compare).
var parallelOff atomic.Bool

func parallelOK() bool { return runtime.GOMAXPROCS(0) > 1 && !parallelOff.Load() }

func workers() int { return runtime.GOMAXPROCS(0) }

var delimitedCache sync.Map // reflect.Type -> bool

// delimited reports whether every value of t is decoded from exactly one
// msgpack value, so that Skip finds element boundaries. A type handed to
// msgpack/v5 for decoding may read several (a CustomDecoder), so a
// slice or map holding one is decoded on one goroutine. It runs after
// compilation (it reads the codecs).
func delimited(t reflect.Type) bool {
	if v, ok := delimitedCache.Load(t); ok {
		return v.(bool)
	}
	ok := !findType(t, func(t reflect.Type) (bool, []reflect.Type) {
		switch {
		case t == timeType:
			return false, nil
		case codecOf(t).decFallback:
			return true, nil
		case t.Kind() == reflect.Struct:
			spec, err := (&builder{}).fields(t)
			if err != nil {
				return true, nil
			}
			return false, spec.types()
		}
		return false, parts(t)
	})
	delimitedCache.Store(t, ok)
	return ok
}

var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256<<10); return &b }}

// runOrdered runs work(i) for i in [0, n) on every core, at most
// 2*workers batches ahead of consume, which is called on the calling
// goroutine in order until it or a batch fails. After a failure, the
// later batches are not worked on.
func runOrdered[R any](n int, work func(i int) R, failed func(R) bool, consume func(i int, r R) error) error {
	w := min(workers(), n)
	results := make([]chan R, n)
	for i := range results {
		results[i] = make(chan R, 1)
	}
	ahead := make(chan struct{}, 2*w)
	var next atomic.Int64
	// abortAt is the first batch known to fail; later ones are skipped
	// (earlier ones still run, so the first error is the one returned).
	var abortAt atomic.Int64
	abortAt.Store(int64(n))
	fail := func(i int) {
		for {
			cur := abortAt.Load()
			if int64(i) >= cur || abortAt.CompareAndSwap(cur, int64(i)) {
				return
			}
		}
	}
	var wg sync.WaitGroup
	for range w {
		wg.Go(func() {
			for {
				ahead <- struct{}{}
				i := int(next.Add(1) - 1)
				if i >= n {
					<-ahead
					return
				}
				var r R
				if int64(i) < abortAt.Load() {
					r = work(i)
					if failed(r) {
						fail(i)
					}
				}
				results[i] <- r
			}
		})
	}
	var err error
	for i := range n {
		r := <-results[i]
		<-ahead
		if err == nil {
			err = consume(i, r)
			if err != nil {
				fail(i)
			}
		}
	}
	wg.Wait()
	return err
}

type encBatch struct {
	buf *[]byte
	err error
}

// encodeSliceParallel encodes the n elements of h (header written).
func encodeSliceParallel(e *encoder, h sliceHeader, size uintptr, elemEnc encFunc, touch func(unsafe.Pointer) uintptr) error {
	nb := (h.len + parBatch - 1) / parBatch
	return runOrdered(nb, func(i int) (r encBatch) {
		r.buf = batchBufs.Get().(*[]byte)
		we := &encoder{buf: (*r.buf)[:0], depth: e.depth}
		defer func() {
			if p := recover(); p != nil {
				r.err = &Error{Kind: ErrFallback, Offset: -1, Msg: "panic while encoding", Err: panicError(p)}
			}
			*r.buf = we.buf
		}()
		lo, hi := i*parBatch, min(h.len, (i+1)*parBatch)
		for j := lo; j < hi; j++ {
			if touch != nil && (j-lo)%touchGroup == 0 {
				for k := j; k < min(hi, j+touchGroup); k++ {
					we.touched += touch(unsafe.Add(h.data, uintptr(k)*size))
				}
			}
			if err := elemEnc(we, unsafe.Add(h.data, uintptr(j)*size)); err != nil {
				r.err = at(err, indexSeg(j))
				return r
			}
		}
		return r
	}, func(r encBatch) bool { return r.err != nil }, e.consumeBatch)
}

// consumeBatch appends (or writes) one batch and recycles its buffer.
func (e *encoder) consumeBatch(_ int, r encBatch) error {
	defer func() {
		if r.buf != nil && cap(*r.buf) <= 4<<20 {
			batchBufs.Put(r.buf)
		}
	}()
	if r.err != nil {
		return r.err
	}
	if e.w != nil {
		if err := e.flush(); err != nil {
			return err
		}
		if _, err := e.w.Write(*r.buf); err != nil {
			e.werr = err
			return err
		}
		return nil
	}
	e.buf = append(e.buf, *r.buf...)
	return nil
}

// mapBatch is parBatch entries of a map, copied into arrays reused from
// batch to batch.
type mapBatch struct {
	keys, vals reflect.Value // [parBatch]K, [parBatch]V, addressable
	kp, vp     unsafe.Pointer
	n          int
	out        encBatch
	done       chan struct{}
}

func (m *mapCodec) newBatch() *mapBatch {
	b := &mapBatch{
		keys: reflect.New(reflect.ArrayOf(parBatch, m.t.Key())).Elem(),
		vals: reflect.New(reflect.ArrayOf(parBatch, m.t.Elem())).Elem(),
	}
	b.kp, b.vp = b.keys.Addr().UnsafePointer(), b.vals.Addr().UnsafePointer()
	return b
}

// encodeParallel encodes the n entries of mv (header written): this
// goroutine cuts the map into batches, the workers encode them, and this
// goroutine writes them in the order cut.
func (m *mapCodec) encodeParallel(e *encoder, mv reflect.Value, n int) error {
	w := workers()
	inFlight := 2 * w
	jobs := make(chan *mapBatch, inFlight)
	var wg sync.WaitGroup
	ksize, vsize := m.key.size, m.elem.size
	for range w {
		wg.Go(func() {
			for b := range jobs {
				b.out = m.encodeBatch(b, e.depth, ksize, vsize)
				close(b.done)
			}
		})
	}
	defer wg.Wait()
	defer close(jobs)
	var free []*mapBatch
	var queue []*mapBatch
	var err error
	// drain writes out the oldest batch.
	drain := func() {
		b := queue[0]
		queue = queue[1:]
		<-b.done
		if err == nil {
			err = e.consumeBatch(0, b.out)
		} else if b.out.buf != nil {
			batchBufs.Put(b.out.buf)
		}
		b.out = encBatch{}
		free = append(free, b)
	}
	it := mv.MapRange()
	written := 0
	for more := true; more && err == nil; {
		var b *mapBatch
		if len(free) > 0 {
			b, free = free[len(free)-1], free[:len(free)-1]
		} else {
			b = m.newBatch()
		}
		b.n, b.done = 0, make(chan struct{})
		for b.n < parBatch {
			if more = it.Next(); !more {
				break
			}
			b.keys.Index(b.n).SetIterKey(it)
			b.vals.Index(b.n).SetIterValue(it)
			b.n++
		}
		written += b.n
		if b.n == 0 {
			free = append(free, b)
			break
		}
		jobs <- b
		queue = append(queue, b)
		if len(queue) >= inFlight {
			drain()
		}
	}
	for len(queue) > 0 {
		drain()
	}
	for _, b := range free { // let go of the entries
		b.keys.SetZero()
		b.vals.SetZero()
	}
	if err == nil && written != n {
		err = m.changed("")
	}
	return err
}

func (m *mapCodec) encodeBatch(b *mapBatch, depth int, ksize, vsize uintptr) (r encBatch) {
	r.buf = batchBufs.Get().(*[]byte)
	we := &encoder{buf: (*r.buf)[:0], depth: depth}
	defer func() {
		if p := recover(); p != nil {
			r.err = &Error{Kind: ErrFallback, Offset: -1, Msg: "panic while encoding", Err: panicError(p)}
		}
		*r.buf = we.buf
	}()
	for j := 0; j < b.n; j++ {
		if j%touchGroup == 0 && (m.touchKey != nil || m.touchVal != nil) {
			we.touched += m.touch(unsafe.Add(b.kp, uintptr(j)*ksize), unsafe.Add(b.vp, uintptr(j)*vsize), min(touchGroup, b.n-j))
		}
		kp := unsafe.Add(b.kp, uintptr(j)*ksize)
		if err := m.encodeKey(we, kp); err != nil {
			r.err = at(err, "{key}")
			return r
		}
		if err := m.valEnc(we, unsafe.Add(b.vp, uintptr(j)*vsize)); err != nil {
			r.err = at(err, keySeg(reflect.NewAt(m.t.Key(), kp).Elem()))
			return r
		}
	}
	return r
}

// bounds finds where each batch of parBatch elements starts, on its own
// goroutine, ahead of the workers: Skip over every element (per values
// each: 1, or 2 for a map entry), publishing each batch's end as it is
// found.
type bounds struct {
	offs  []int           // offs[i]: start of batch i; offs[nb]: the end
	ready []chan struct{} // ready[i] is closed once offs[i+1] is set, or failAt <= i
	// failAt is the first batch whose end Skip could not find (nb if
	// none); set before the ready channels from it on are closed. It is
	// atomic: a worker of an earlier batch may read it as it is set.
	failAt atomic.Int64
	stop   atomic.Bool
	done   chan struct{}
}

func findBounds(d *decoder, n, per int) *bounds {
	nb := (n + parBatch - 1) / parBatch
	b := &bounds{offs: make([]int, nb+1), ready: make([]chan struct{}, nb), done: make(chan struct{})}
	b.failAt.Store(int64(nb))
	for i := range b.ready {
		b.ready[i] = make(chan struct{})
	}
	b.offs[0] = d.pos
	data := d.data
	go func() {
		defer close(b.done)
		pos := b.offs[0]
		for i := range nb {
			ok := !b.stop.Load()
			for j := i * parBatch; ok && j < min(n, (i+1)*parBatch); j++ {
				for range per {
					k, err := Skip(data[pos:])
					if err != nil {
						ok = false
						break
					}
					pos += k
				}
			}
			if !ok {
				b.failAt.Store(int64(i))
				for ; i < nb; i++ {
					close(b.ready[i])
				}
				return
			}
			b.offs[i+1] = pos
			close(b.ready[i])
		}
	}()
	return b
}

// batch waits for batch i's bounds; ok is false if they cannot be found.
func (b *bounds) batch(i int) (from, to int, ok bool) {
	<-b.ready[i]
	if int64(i) >= b.failAt.Load() {
		return 0, 0, false
	}
	return b.offs[i], b.offs[i+1], true
}

// finish stops the search and waits for its goroutine.
func (b *bounds) finish() {
	b.stop.Store(true)
	<-b.done
}

// worker returns a decoder for one batch: its input ends where the
// batch does, so a batch cannot read into the next.
func (d *decoder) worker(from, to int) *decoder {
	return &decoder{data: d.data[:to], pos: from, depth: d.depth}
}

// errSerial: the input is malformed somewhere; decode it on one
// goroutine, which fails where it is, as it would without the parallel
// path.
var errSerial = errors.New("decode serially")

// decodeSliceParallel decodes n elements into the array at data. It
// returns errSerial if the input is malformed: the elements decoded so
// far decode again, to the same values, on the serial path.
func decodeSliceParallel(d *decoder, data unsafe.Pointer, n int, size uintptr, elemDec decFunc) error {
	b := findBounds(d, n, 1)
	defer b.finish()
	nb := len(b.ready)
	err := runOrdered(nb, func(i int) (err error) {
		from, to, ok := b.batch(i)
		if !ok {
			return errSerial
		}
		wd := d.worker(from, to)
		j := i * parBatch
		defer func() {
			if p := recover(); p != nil {
				err = &Error{Kind: ErrFallback, Offset: wd.pos, Msg: "panic while decoding", Err: panicError(p)}
				err = at(err, indexSeg(j))
			}
		}()
		for hi := min(n, j+parBatch); j < hi; j++ {
			if err := elemDec(wd, unsafe.Add(data, uintptr(j)*size)); err != nil {
				return at(err, indexSeg(j))
			}
		}
		if wd.pos != to {
			return errMalformed(wd.pos, "element length disagrees with Skip")
		}
		return nil
	}, func(err error) bool { return err != nil }, func(_ int, err error) error { return err })
	if err != nil {
		return err
	}
	d.pos = b.offs[nb]
	return nil
}

// decodeParallel decodes n entries into the map getMap returns (on
// first use; it is called once, on this goroutine): workers decode
// batches of keys and values into arrays, this goroutine inserts them in
// order.
func (m *mapCodec) decodeParallel(d *decoder, getMap func() reflect.Value, n int) error {
	var mv reflect.Value
	defer func() {
		if !mv.IsValid() {
			getMap() // the map is set, empty, even on error
		}
	}()
	b := findBounds(d, n, 2)
	defer b.finish()
	nb := len(b.ready)
	ksize, vsize := m.key.size, m.elem.size
	kt, vt := m.t.Key(), m.t.Elem()
	var pool sync.Pool
	type res struct {
		b   *mapBatch
		err error
	}
	err := runOrdered(nb, func(i int) (r res) {
		from, to, ok := b.batch(i)
		if !ok {
			r.err = errSerial
			return r
		}
		mb, _ := pool.Get().(*mapBatch)
		if mb == nil {
			mb = m.newBatch()
		}
		r.b = mb
		wd := d.worker(from, to)
		defer func() {
			if p := recover(); p != nil {
				r.err = &Error{Kind: ErrFallback, Offset: wd.pos, Msg: "panic while decoding", Err: panicError(p)}
			}
		}()
		mb.n = min(parBatch, n-i*parBatch)
		for j := 0; j < mb.n; j++ {
			kp := unsafe.Add(mb.kp, uintptr(j)*ksize)
			if err := m.keyDec(wd, kp); err != nil {
				r.err = at(err, "{key}")
				return r
			}
			if err := m.valDec(wd, unsafe.Add(mb.vp, uintptr(j)*vsize)); err != nil {
				r.err = at(err, keySeg(reflect.NewAt(kt, kp).Elem()))
				return r
			}
		}
		if wd.pos != to {
			r.err = errMalformed(wd.pos, "entry length disagrees with Skip")
		}
		return r
	}, func(r res) bool { return r.err != nil }, func(_ int, r res) error {
		if r.b == nil {
			return r.err
		}
		defer func() {
			// Zero the arrays: decoders merge into what they find,
			// and the entries must not be kept alive.
			r.b.keys.SetZero()
			r.b.vals.SetZero()
			pool.Put(r.b)
		}()
		if r.err != nil {
			return r.err
		}
		if !mv.IsValid() {
			mv = getMap()
		}
		for j := 0; j < r.b.n; j++ {
			k := reflect.NewAt(kt, unsafe.Add(r.b.kp, uintptr(j)*ksize)).Elem()
			v := reflect.NewAt(vt, unsafe.Add(r.b.vp, uintptr(j)*vsize)).Elem()
			if err := m.insert(mv, k, v, d, b.offs[0]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	d.pos = b.offs[nb]
	return nil
}
