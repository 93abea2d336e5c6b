package segment

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// DefaultChunkSize is the raw size of the chunks a value is cut into.
const DefaultChunkSize = 4 << 20

// Options tune a Writer. The zero value is good.
type Options struct {
	Level     Level // compression level; LevelFastest by default
	Workers   int   // goroutines compressing chunks at once; GOMAXPROCS by default
	ChunkSize int   // raw bytes per chunk; DefaultChunkSize by default, at most MaxChunk
	// Values is how many values the segment will hold, if known: the
	// Writer sizes its index for them at once (for at most maxSized)
	// instead of growing it as they come.
	Values int
}

// maxSized bounds the index a Writer sizes ahead for Options.Values.
const maxSized = 1 << 20

// Info describes a finished segment.
type Info struct {
	ID      uint64
	Size    int64   // bytes written
	Entries []Entry // sorted by name
}

// Writer writes one segment to an io.Writer.
//
// Values are cut into chunks that up to Options.Workers goroutines
// compress while the caller goes on; one goroutine writes them in order.
// At most about 2×Workers chunks are in flight, so memory stays bounded
// however large the values. A Writer is not safe for concurrent use.
type Writer struct {
	id    uint64
	opts  Options
	bw    *bufio.Writer
	names map[string]bool

	sem   chan struct{} // bounds chunks being compressed
	order chan *job     // chunks in file order, to the write loop
	done  chan struct{} // closed when the write loop ends

	// Owned by the write loop until done is closed.
	off     int64
	entries []Entry
	err     error

	finished bool
	open     *ValueWriter
}

type pendingValue struct {
	name   string
	rawLen int64
	rawSum uint64
}

// A job is one chunk of a value (or a value's stored bytes copied whole),
// on its way to the write loop.
type job struct {
	v           *pendingValue
	first, last bool
	raw         []byte
	pool        *sync.Pool // where raw goes back once written; nil if not ours
	out         []byte     // compressed raw, from bufPool
	codec       byte
	stored      []byte // AddStored: chunks as they were stored, headers included
	ready       chan struct{}
}

var (
	bufPool   sync.Pool // *[]byte, compression outputs
	rawPool   sync.Pool // *[]byte, ValueWriter chunks of ChunkSize
	smallPool sync.Pool // *[]byte, a ValueWriter's first smallChunk bytes
)

// bufioPool keeps the writers' output buffers: a fresh MiB per segment
// would cost more than a small save itself.
var bufioPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 1<<20) }}

// smallChunk is the capacity a value's first buffer starts with: most
// values are small, and a fresh ChunkSize buffer for each would touch
// megabytes of new memory per save.
const smallChunk = 64 << 10

// NewWriter writes a segment header to w and returns a Writer for the
// values. The caller must call Finish (then sync the file) or Abort.
func NewWriter(w io.Writer, id uint64, opts Options) (*Writer, error) {
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.ChunkSize > MaxChunk {
		return nil, fmt.Errorf("segment: chunk size %d exceeds the format's limit of %d", opts.ChunkSize, MaxChunk)
	}
	if opts.Level < LevelFastest || opts.Level > LevelNone {
		return nil, fmt.Errorf("segment: unknown compression level %d", opts.Level)
	}
	bw := bufioPool.Get().(*bufio.Writer)
	bw.Reset(w)
	if _, err := bw.Write(appendHeader(nil, id)); err != nil {
		bw.Reset(nil)
		bufioPool.Put(bw)
		return nil, err
	}
	sw := &Writer{
		id:    id,
		opts:  opts,
		bw:    bw,
		names: make(map[string]bool, min(max(opts.Values, 0), maxSized)),
		sem:   make(chan struct{}, opts.Workers),
		order: make(chan *job, 2*opts.Workers),
		done:  make(chan struct{}),
		off:   HeaderSize,
	}
	sw.entries = make([]Entry, 0, min(max(opts.Values, 0), maxSized))
	go sw.writeLoop()
	return sw, nil
}

// ErrFinished is returned by the Writer's methods after Finish or Abort.
var ErrFinished = errors.New("segment: writer already finished")

// Add adds a value under name. raw must not be changed until Finish
// returns. Names must be unique, non-empty and at most MaxNameLen bytes.
func (w *Writer) Add(name string, raw []byte) error {
	if err := w.start(name); err != nil {
		return err
	}
	v := &pendingValue{name: name, rawLen: int64(len(raw)), rawSum: xxhash.Sum64(raw)}
	if len(raw) == 0 {
		w.enqueue(&job{v: v, first: true, last: true})
		return nil
	}
	for lo := 0; lo < len(raw); lo += w.opts.ChunkSize {
		hi := min(lo+w.opts.ChunkSize, len(raw))
		w.enqueue(&job{v: v, first: lo == 0, last: hi == len(raw), raw: raw[lo:hi]})
	}
	return nil
}

// AddStored adds a value under name whose stored bytes (chunk headers
// included) come from another segment, as Reader.ReadStored returned
// them, with the raw length and checksum of its entry there: a copy that
// neither decompresses nor compresses. stored must not be changed until
// Finish returns.
func (w *Writer) AddStored(name string, stored []byte, rawLen int64, rawSum uint64) error {
	if err := w.start(name); err != nil {
		return err
	}
	w.enqueue(&job{v: &pendingValue{name: name, rawLen: rawLen, rawSum: rawSum}, first: true, last: true, stored: stored})
	return nil
}

func (w *Writer) start(name string) error {
	if w.finished {
		return ErrFinished
	}
	if w.open != nil {
		return fmt.Errorf("segment: state %q added while the value of %q is still being written", name, w.open.v.name)
	}
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("segment: value name of %d bytes, want 1 to %d", len(name), MaxNameLen)
	}
	if w.names[name] {
		return fmt.Errorf("segment: value %q added twice", name)
	}
	w.names[name] = true
	return nil
}

// tinyChunk is the size under which a chunk is stored as it is, with no
// goroutine to compress it: a zstd frame's own overhead is a dozen bytes,
// and a state of a few bytes would cost more to hand over than to write.
const tinyChunk = 64

// ready is the channel of a chunk that needs no compressing.
var ready = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// enqueue hands a chunk to a compressing goroutine and to the write loop.
func (w *Writer) enqueue(j *job) {
	if len(j.raw) < tinyChunk || w.opts.Level == LevelNone {
		j.codec, j.ready = codecNone, ready
	} else {
		j.ready = make(chan struct{})
		w.sem <- struct{}{}
		go w.compress(j)
	}
	w.order <- j
}

// Value starts a value under name and returns a writer for its raw bytes:
// a streaming Add. Each chunk is compressed as soon as it is full, while
// the caller goes on writing. Close it before adding another value or
// calling Finish.
func (w *Writer) Value(name string) (*ValueWriter, error) {
	if err := w.start(name); err != nil {
		return nil, err
	}
	vw := &ValueWriter{w: w, v: &pendingValue{name: name}, first: true}
	vw.d.Reset()
	w.open = vw
	return vw, nil
}

// ValueWriter writes one value of a segment. Get one from Writer.Value.
type ValueWriter struct {
	w      *Writer
	v      *pendingValue
	buf    []byte
	pool   *sync.Pool // buf's
	d      xxhash.Digest
	first  bool
	closed bool
}

func (vw *ValueWriter) flush(last bool) {
	vw.w.enqueue(&job{v: vw.v, first: vw.first, last: last, raw: vw.buf, pool: vw.pool})
	vw.first = false
	vw.buf, vw.pool = nil, nil
}

// Write appends p to the value.
func (vw *ValueWriter) Write(p []byte) (int, error) {
	if vw.closed {
		return 0, ErrFinished
	}
	n := len(p)
	size := vw.w.opts.ChunkSize
	for len(p) > 0 {
		if len(vw.buf) == size {
			vw.flush(false) // only now is it known that more follows
		}
		switch {
		case vw.buf == nil && vw.first && size > smallChunk:
			vw.buf, vw.pool = getBuf(&smallPool, smallChunk), &smallPool
		case vw.buf == nil:
			vw.buf, vw.pool = getBuf(&rawPool, size), &rawPool
		case len(vw.buf) == cap(vw.buf) && cap(vw.buf) < size:
			// The value outgrew its small first buffer.
			big := append(getBuf(&rawPool, size), vw.buf...)
			putBuf(vw.pool, vw.buf)
			vw.buf, vw.pool = big, &rawPool
		}
		k := copy(vw.buf[len(vw.buf):min(cap(vw.buf), size)], p)
		vw.buf = vw.buf[:len(vw.buf)+k]
		vw.d.Write(p[:k])
		vw.v.rawLen += int64(k)
		p = p[k:]
	}
	return n, nil
}

// getBuf returns an empty buffer of capacity n from pool, or a new one.
func getBuf(pool *sync.Pool, n int) []byte {
	if b, ok := pool.Get().(*[]byte); ok && cap(*b) == n {
		return (*b)[:0]
	}
	return make([]byte, 0, n)
}

func putBuf(pool *sync.Pool, b []byte) {
	if pool != nil && b != nil {
		pool.Put(&b)
	}
}

// Close ends the value.
func (vw *ValueWriter) Close() error {
	if vw.closed {
		return ErrFinished
	}
	vw.closed = true
	vw.v.rawSum = vw.d.Sum64()
	vw.flush(true)
	vw.w.open = nil
	return nil
}

// incompressible says whether zstd would not shrink raw, from samples:
// compressing a chunk of random bytes whole only to store it raw would
// cost as much as a compressible one.
func incompressible(enc interface {
	EncodeAll(src, dst []byte) []byte
}, raw []byte, buf []byte) bool {
	const sample = 16 << 10
	if len(raw) < 4*sample {
		return false
	}
	for _, at := range []int{0, len(raw)/2 - sample/2, len(raw) - sample} {
		if out := enc.EncodeAll(raw[at:at+sample], buf[:0]); len(out) < sample*31/32 {
			return false
		}
	}
	return true
}

func (w *Writer) compress(j *job) {
	defer func() { <-w.sem; close(j.ready) }()
	j.codec = codecNone
	var buf []byte
	if p, ok := bufPool.Get().(*[]byte); ok {
		buf = (*p)[:0]
	}
	enc := encoder(w.opts.Level)
	if incompressible(enc, j.raw, buf) {
		putBuf(&bufPool, buf)
		return
	}
	out := enc.EncodeAll(j.raw, buf)
	if len(out) < len(j.raw) {
		j.codec, j.out = codecZstd, out
	} else {
		putBuf(&bufPool, out)
	}
}

func (w *Writer) writeLoop() {
	defer close(w.done)
	var d xxhash.Digest
	var start int64
	var hdr []byte
	write := func(p []byte) {
		d.Write(p)
		if w.err == nil {
			_, w.err = w.bw.Write(p)
		}
		w.off += int64(len(p))
	}
	for j := range w.order {
		<-j.ready
		if j.first {
			d.Reset()
			start = w.off
		}
		switch {
		case j.stored != nil:
			write(j.stored)
		case len(j.raw) > 0:
			data := j.raw
			if j.codec == codecZstd {
				data = j.out
			}
			hdr = appendChunkHeader(hdr[:0], j.codec, len(j.raw), len(data))
			write(hdr)
			write(data)
		}
		if j.out != nil {
			putBuf(&bufPool, j.out)
		}
		putBuf(j.pool, j.raw)
		if j.last {
			w.entries = append(w.entries, Entry{
				Name: j.v.name, Offset: start, StoredLen: w.off - start,
				RawLen: j.v.rawLen, StoredSum: d.Sum64(), RawSum: j.v.rawSum,
			})
		}
	}
}

// stop ends the write loop and gives the output buffer back.
func (w *Writer) stop() {
	if w.open != nil {
		putBuf(w.open.pool, w.open.buf)
		w.open.buf, w.open.closed, w.open = nil, true, nil
	}
	w.finished = true
	close(w.order)
	<-w.done
}

func (w *Writer) releaseBufio() {
	w.bw.Reset(nil)
	bufioPool.Put(w.bw)
	w.bw = nil
}

// Abort abandons the segment: it stops the writer's goroutines and
// writes nothing more. The caller removes the file. Abort after Finish
// or Abort does nothing.
func (w *Writer) Abort() {
	if w.finished {
		return
	}
	w.stop()
	w.releaseBufio()
}

// Finish waits for every value to be written, then writes the index and
// the trailer and flushes. It does not sync: the caller does. A value
// still open is closed first.
func (w *Writer) Finish() (Info, error) {
	if w.finished {
		return Info{}, ErrFinished
	}
	if w.open != nil {
		w.open.Close()
	}
	w.stop()
	defer w.releaseBufio()
	if w.err != nil {
		return Info{}, w.err
	}
	sort.Slice(w.entries, func(i, k int) bool { return w.entries[i].Name < w.entries[k].Name })
	index := make([]byte, 4, 4+len(w.entries)*(EntryHeaderSize+16))
	le.PutUint32(index, uint32(len(w.entries)))
	for i := range w.entries {
		index = appendEntry(index, &w.entries[i])
	}
	tail := appendTrailer(index, w.off, int64(len(index)), xxhash.Sum64(index), w.id)
	if _, err := w.bw.Write(tail); err != nil {
		return Info{}, err
	}
	if err := w.bw.Flush(); err != nil {
		return Info{}, err
	}
	return Info{ID: w.id, Size: w.off + int64(len(tail)), Entries: w.entries}, nil
}
