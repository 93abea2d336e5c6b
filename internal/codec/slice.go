package codec

import (
	"reflect"
	"strconv"
	"time"
	"unsafe"
)

// maxPrealloc bounds what a slice header may make the decoder allocate
// before its elements are read: 1 MiB plus 8 bytes per input byte left.
// Past it, the backing array grows as elements arrive (doubling), so a
// header claiming many large elements costs only what the input backs.
func maxPrealloc(remaining int) uintptr { return 1<<20 + 8*uintptr(remaining) }

func indexSeg(i int) string { return "[" + strconv.Itoa(i) + "]" }

func (b *builder) slice(c *codec) (encFunc, decFunc) {
	t := c.typ
	size := c.elem.size
	elemEnc := c.elem.encoder()
	elemDec := c.elem.decoder()
	// msgpack/v5 decodes []string with its own code, which leaves the
	// slice as it is on nil.
	keepOnNil := t.Elem() == stringType
	wanted := t.String()
	emptyData := reflect.MakeSlice(t, 0, 0).UnsafePointer()
	alloc := allocator(t.Elem())
	touch := touchFor(t.Elem())
	enc := func(e *encoder, p unsafe.Pointer) error {
		h := *(*sliceHeader)(p)
		if h.data == nil {
			e.buf = append(e.buf, 0xc0)
			return nil
		}
		e.buf = appendArrayLen(e.buf, h.len)
		if h.len == 0 {
			return nil
		}
		if err := e.enter(); err != nil {
			return err
		}
		if e.par && h.len >= parMinElems && parallelOK() {
			err := encodeSliceParallel(e, h, size, elemEnc, touch)
			e.depth--
			return err
		}
		for i := 0; i < h.len; i++ {
			if touch != nil && i%touchGroup == 0 {
				// Read the strings of the next elements first: their
				// cache misses overlap (see mapCodec.encodeGrouped).
				for j := i; j < min(h.len, i+touchGroup); j++ {
					e.touched += touch(unsafe.Add(h.data, uintptr(j)*size))
				}
			}
			if err := elemEnc(e, unsafe.Add(h.data, uintptr(i)*size)); err != nil {
				return at(err, indexSeg(i))
			}
			if err := e.flushFull(); err != nil {
				return err
			}
		}
		e.depth--
		return nil
	}
	dec := func(d *decoder, p unsafe.Pointer) error {
		n, err := d.readLen(&arrayLens, wanted)
		if err != nil {
			return err
		}
		h := (*sliceHeader)(p)
		if n < 0 {
			if !keepOnNil {
				*h = sliceHeader{}
			}
			return nil
		}
		if n == 0 {
			if h.data == nil {
				*h = sliceHeader{data: emptyData}
			} else {
				h.len = 0
			}
			return nil
		}
		if err := d.enter(); err != nil {
			return err
		}
		// Like msgpack/v5, decode into the existing elements when the
		// capacity allows, else into a new array holding a copy of them.
		if h.cap >= n {
			h.len = n
		} else {
			k := n
			if size > 0 && uintptr(n)*size > maxPrealloc(d.remaining()) {
				k = max(min(n, int(maxPrealloc(d.remaining())/size)), h.len, 1)
			}
			growSlice(t, alloc, p, k)
			h.len = h.cap
		}
		if h.cap == n && d.par && n >= parMinElems && parallelOK() && delimited(t.Elem()) {
			err := decodeSliceParallel(d, h.data, n, size, elemDec)
			if err != errSerial {
				if err == nil {
					d.depth--
				}
				return err
			}
		}
		for i := 0; i < n; i++ {
			if i == h.cap {
				growSlice(t, alloc, p, min(n, 2*h.cap))
				h.len = h.cap
			}
			if err := elemDec(d, unsafe.Add(h.data, uintptr(i)*size)); err != nil {
				h.len = i
				return at(err, indexSeg(i))
			}
		}
		h.len = n
		d.depth--
		return nil
	}
	return enc, dec
}

// growSlice gives the slice at p a new backing array of capacity k
// holding a copy of its elements.
func growSlice(t reflect.Type, alloc func(int) unsafe.Pointer, p unsafe.Pointer, k int) {
	h := (*sliceHeader)(p)
	if h.len == 0 {
		*h = sliceHeader{data: alloc(k), len: 0, cap: k}
		return
	}
	old := reflect.NewAt(t, p).Elem()
	nv := reflect.MakeSlice(t, k, k)
	reflect.Copy(nv, old)
	*h = sliceHeader{data: nv.UnsafePointer(), len: old.Len(), cap: k}
}

// allocOf allocates arrays of E.
func allocOf[E any](n int) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(make([]E, n))) }

// allocator returns a function allocating zeroed arrays of n elements of
// t: typed code for the basic types (a named type has the memory layout
// of its underlying type), reflect for the others.
func allocator(t reflect.Type) func(int) unsafe.Pointer {
	switch t.Kind() {
	case reflect.String:
		return allocOf[string]
	case reflect.Bool, reflect.Int8, reflect.Uint8:
		return allocOf[uint8]
	case reflect.Int16, reflect.Uint16:
		return allocOf[uint16]
	case reflect.Int32, reflect.Uint32, reflect.Float32:
		return allocOf[uint32]
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint64, reflect.Float64:
		return allocOf[uint64]
	case reflect.Interface:
		if t.NumMethod() == 0 {
			return allocOf[any]
		}
	case reflect.Pointer:
		return allocOf[unsafe.Pointer]
	case reflect.Slice:
		return allocOf[sliceHeader]
	}
	if t == timeType {
		return allocOf[time.Time]
	}
	st := reflect.SliceOf(t)
	return func(n int) unsafe.Pointer { return reflect.MakeSlice(st, n, n).UnsafePointer() }
}

func (b *builder) array(c *codec) (encFunc, decFunc) {
	t := c.typ
	n := t.Len()
	size := c.elem.size
	elemEnc := c.elem.encoder()
	elemDec := c.elem.decoder()
	header := appendArrayLen(nil, n)
	wanted := t.String()
	enc := func(e *encoder, p unsafe.Pointer) error {
		e.buf = append(e.buf, header...)
		for i := 0; i < n; i++ {
			if err := elemEnc(e, unsafe.Add(p, uintptr(i)*size)); err != nil {
				return at(err, indexSeg(i))
			}
		}
		return nil
	}
	// A shorter array fills the first elements; nil leaves the array
	// as it is; a longer one is an error (msgpack/v5 does the same).
	dec := func(d *decoder, p unsafe.Pointer) error {
		start := d.pos
		m, err := d.readLen(&arrayLens, wanted)
		if err != nil {
			return err
		}
		if m < 0 {
			return nil
		}
		if m > n {
			return &Error{Kind: ErrMismatch, Offset: start, Stored: describe(d.data, start), Wanted: wanted,
				Msg: "more elements than the array holds"}
		}
		if err := d.enter(); err != nil {
			return err
		}
		for i := 0; i < m; i++ {
			if err := elemDec(d, unsafe.Add(p, uintptr(i)*size)); err != nil {
				return at(err, indexSeg(i))
			}
		}
		d.depth--
		return nil
	}
	return enc, dec
}

func (b *builder) pointer(c *codec) (encFunc, decFunc) {
	et := c.typ.Elem()
	elemEnc := c.elem.encoder()
	elemDec := c.elem.decoder()
	enc := func(e *encoder, p unsafe.Pointer) error {
		q := *(*unsafe.Pointer)(p)
		if q == nil {
			e.buf = append(e.buf, 0xc0)
			return nil
		}
		if err := e.enter(); err != nil {
			return err
		}
		err := elemEnc(e, q)
		e.depth--
		return err
	}
	// nil sets the pointer to nil; anything else decodes into the
	// pointed-to value, allocated first if the pointer is nil. Pointers
	// count as a level: `type P *P` nests without consuming input.
	dec := func(d *decoder, p unsafe.Pointer) error {
		if d.pos < len(d.data) && d.data[d.pos] == 0xc0 {
			d.pos++
			*(*unsafe.Pointer)(p) = nil
			return nil
		}
		if err := d.enter(); err != nil {
			return err
		}
		q := *(*unsafe.Pointer)(p)
		if q == nil {
			q = reflect.New(et).UnsafePointer()
			*(*unsafe.Pointer)(p) = q
		}
		err := elemDec(d, q)
		d.depth--
		return err
	}
	return enc, dec
}
