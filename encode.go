package instadump

import (
	"bufio"
	"encoding"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Values are encoded with msgpack/v5's reflection encoder, which runs on
// one core. A large map is the common shape of a big state, and a msgpack
// map is a header followed by its entries in any order, so encodeTo cuts
// a large map into batches of entries that every core encodes at once,
// and writes them in order: the same bytes msgpack would write for some
// iteration order.

// splitMapMin is the smallest map encoded on several cores.
const splitMapMin = 1 << 15

// splitBatch is the number of entries in one batch.
const splitBatch = 4096

var bufioPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// encodeTo writes v's msgpack encoding to w.
func encodeTo(w io.Writer, v any) error {
	bw := bufioPool.Get().(*bufio.Writer)
	bw.Reset(w)
	defer func() { bw.Reset(nil); bufioPool.Put(bw) }()
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(bw)
	var err error
	if rv := reflect.ValueOf(v); splittable(rv) {
		err = encodeMapParallel(enc, bw, rv)
	} else {
		err = enc.Encode(v)
	}
	if err != nil {
		return err
	}
	return bw.Flush()
}

var (
	customEncoder = reflect.TypeFor[msgpack.CustomEncoder]()
	marshaler     = reflect.TypeFor[msgpack.Marshaler]()
	binMarshaler  = reflect.TypeFor[encoding.BinaryMarshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
)

// splittable says whether rv is a map large enough to encode in batches,
// and encoded by msgpack as a plain map (no encoding methods of its own).
func splittable(rv reflect.Value) bool {
	if rv.Kind() != reflect.Map || rv.IsNil() || rv.Len() < splitMapMin || runtime.GOMAXPROCS(0) < 2 {
		return false
	}
	for _, t := range []reflect.Type{rv.Type(), reflect.PointerTo(rv.Type())} {
		if t.Implements(customEncoder) || t.Implements(marshaler) || t.Implements(binMarshaler) || t.Implements(textMarshaler) {
			return false
		}
	}
	return true
}

// batch is splitBatch entries of the map, copied into arrays that are
// reused from batch to batch (SetIterKey/SetIterValue), so that cutting
// the map allocates nothing per entry.
type batch struct {
	keys, vals reflect.Value // arrays [splitBatch]K and [splitBatch]V
	n          int
	out        chunkBuf
	err        error
	done       chan struct{}
}

// encodeMapParallel writes the map header with enc, then the entries,
// encoded in batches on every core, in the order the batches were cut.
func encodeMapParallel(enc *msgpack.Encoder, bw *bufio.Writer, rv reflect.Value) error {
	n := rv.Len()
	if err := enc.EncodeMapLen(n); err != nil {
		return err
	}
	workers := runtime.GOMAXPROCS(0)
	inFlight := 2 * workers
	jobs := make(chan *batch, inFlight)
	order := make(chan *batch, inFlight)
	free := make(chan *batch, inFlight+1)
	for range inFlight + 1 {
		free <- &batch{
			keys: reflect.New(reflect.ArrayOf(splitBatch, rv.Type().Key())).Elem(),
			vals: reflect.New(reflect.ArrayOf(splitBatch, rv.Type().Elem())).Elem(),
		}
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			e := msgpack.GetEncoder()
			defer msgpack.PutEncoder(e)
			// The encoder writes a few bytes at a time: buffer them.
			bw := bufioPool.Get().(*bufio.Writer)
			defer func() { bw.Reset(nil); bufioPool.Put(bw) }()
			for b := range jobs {
				bw.Reset(&b.out)
				e.Reset(bw)
				for i := 0; i < b.n && b.err == nil; i++ {
					if b.err = e.EncodeValue(b.keys.Index(i)); b.err == nil {
						b.err = e.EncodeValue(b.vals.Index(i))
					}
				}
				if b.err == nil {
					b.err = bw.Flush()
				}
				close(b.done)
			}
		})
	}
	go func() { // cut the map into batches
		defer close(jobs)
		defer close(order)
		iter := rv.MapRange()
		for more := true; more; {
			b := <-free
			b.n, b.err, b.done = 0, nil, make(chan struct{})
			for b.n < splitBatch {
				if more = iter.Next(); !more {
					break
				}
				b.keys.Index(b.n).SetIterKey(iter)
				b.vals.Index(b.n).SetIterValue(iter)
				b.n++
			}
			if b.n == 0 {
				return
			}
			jobs <- b
			order <- b
		}
	}()
	var err error
	written := 0
	for b := range order {
		<-b.done
		written += b.n
		if err == nil {
			err = b.err
		}
		if err == nil {
			err = b.out.writeTo(bw)
		} else {
			b.out.writeTo(io.Discard)
		}
		free <- b // back to the cutter, arrays and all
	}
	wg.Wait()
	if err == nil && written != n {
		err = fmt.Errorf("the map changed while it was being saved (%d entries, then %d): change a state's value only through Set, Update or SetIn", n, written)
	}
	return err
}
