package inspect

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Values are turned into JSON straight from their msgpack bytes, without
// Go types and without building the value in memory: strings, numbers,
// booleans and null as themselves, binary as base64, timestamps as RFC
// 3339 strings, maps as objects (keys that are not strings as their JSON
// text), other extension types as {"msgpack_ext": type, "data": base64}.
// Nesting is bounded, every length is checked against the bytes at hand,
// and nothing is allocated for what the bytes only declare.

// maxDepth bounds the nesting of a value.
const maxDepth = 10000

var errMsgpack = errors.New("not valid msgpack")

type reader struct {
	b   []byte
	pos int
}

func (r *reader) fail(format string, args ...any) error {
	return fmt.Errorf("%w at byte %d: %s", errMsgpack, r.pos, fmt.Sprintf(format, args...))
}

func (r *reader) take(n uint64) ([]byte, error) {
	if n > uint64(len(r.b)-r.pos) {
		return nil, r.fail("%d bytes declared, %d left", n, len(r.b)-r.pos)
	}
	p := r.b[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return p, nil
}

func (r *reader) uint(n int) (uint64, error) {
	p, err := r.take(uint64(n))
	if err != nil {
		return 0, err
	}
	switch n {
	case 1:
		return uint64(p[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(p)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(p)), nil
	}
	return binary.BigEndian.Uint64(p), nil
}

// kind of a msgpack item.
type kind int

const (
	kNil kind = iota
	kBool
	kInt
	kUint
	kFloat
	kStr
	kBin
	kArray
	kMap
	kExt
)

// item is the head of a msgpack item: for containers their count, for
// scalars their value, for str, bin and ext their bytes.
type item struct {
	k     kind
	b     bool
	i     int64
	u     uint64
	f     float64
	f32   bool
	n     uint64 // array or map count
	data  []byte // str, bin, ext
	ext   int8
	start int
}

func (r *reader) head() (item, error) {
	it := item{start: r.pos}
	p, err := r.take(1)
	if err != nil {
		return it, err
	}
	c := p[0]
	var n uint64
	switch {
	case c <= 0x7f:
		it.k, it.u = kUint, uint64(c)
		return it, nil
	case c >= 0xe0:
		it.k, it.i = kInt, int64(int8(c))
		return it, nil
	case c >= 0x80 && c <= 0x8f:
		it.k, it.n = kMap, uint64(c&0x0f)
		return it, nil
	case c >= 0x90 && c <= 0x9f:
		it.k, it.n = kArray, uint64(c&0x0f)
		return it, nil
	case c >= 0xa0 && c <= 0xbf:
		it.k = kStr
		it.data, err = r.take(uint64(c & 0x1f))
		return it, err
	}
	switch c {
	case 0xc0:
		it.k = kNil
	case 0xc2, 0xc3:
		it.k, it.b = kBool, c == 0xc3
	case 0xc4, 0xc5, 0xc6:
		it.k = kBin
		if n, err = r.uint(1 << (c - 0xc4)); err == nil {
			it.data, err = r.take(n)
		}
	case 0xd9, 0xda, 0xdb:
		it.k = kStr
		if n, err = r.uint(1 << (c - 0xd9)); err == nil {
			it.data, err = r.take(n)
		}
	case 0xc7, 0xc8, 0xc9:
		if n, err = r.uint(1 << (c - 0xc7)); err == nil {
			it, err = r.extBody(it, n)
		}
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		it, err = r.extBody(it, 1<<(c-0xd4))
	case 0xca:
		n, err = r.uint(4)
		it.k, it.f, it.f32 = kFloat, float64(math.Float32frombits(uint32(n))), true
	case 0xcb:
		n, err = r.uint(8)
		it.k, it.f = kFloat, math.Float64frombits(n)
	case 0xcc, 0xcd, 0xce, 0xcf:
		it.k = kUint
		it.u, err = r.uint(1 << (c - 0xcc))
	case 0xd0, 0xd1, 0xd2, 0xd3:
		it.k = kInt
		n, err = r.uint(1 << (c - 0xd0))
		shift := 64 - 8*(1<<(c-0xd0))
		it.i = int64(n<<shift) >> shift
	case 0xdc, 0xdd:
		it.k = kArray
		it.n, err = r.uint(2 << (c - 0xdc))
	case 0xde, 0xdf:
		it.k = kMap
		it.n, err = r.uint(2 << (c - 0xde))
	default:
		return it, r.fail("unknown code %#x", c)
	}
	return it, err
}

func (r *reader) extBody(it item, n uint64) (item, error) {
	t, err := r.take(1)
	if err != nil {
		return it, err
	}
	it.k, it.ext = kExt, int8(t[0])
	it.data, err = r.take(n)
	return it, err
}

// checkCount refuses a container count the bytes left cannot back: each
// element takes at least one byte.
func (r *reader) checkCount(it item) error {
	per := uint64(1)
	if it.k == kMap {
		per = 2
	}
	if it.n > uint64(len(r.b)-r.pos)/per {
		return r.fail("%d elements declared, %d bytes left", it.n, len(r.b)-r.pos)
	}
	return nil
}

// container reads the head of an array or map (k) and returns its count,
// checked against the bytes left; any other item fails with msg.
func (r *reader) container(k kind, msg string) (uint64, error) {
	it, err := r.head()
	if err != nil {
		return 0, err
	}
	if it.k != k {
		return 0, r.fail("%s", msg)
	}
	return it.n, r.checkCount(it)
}

// spans passes over the next n items, calling fn with the index and the
// bytes of each.
func (r *reader) spans(n uint64, fn func(i uint64, b []byte)) error {
	for i := range n {
		p := r.pos
		if err := r.skip(1); err != nil {
			return err
		}
		fn(i, r.b[p:r.pos])
	}
	return nil
}

// skip passes over one whole item.
func (r *reader) skip(depth int) error {
	if depth > maxDepth {
		return r.fail("nested deeper than %d", maxDepth)
	}
	it, err := r.head()
	if err != nil || (it.k != kArray && it.k != kMap) {
		return err
	}
	if err := r.checkCount(it); err != nil {
		return err
	}
	n := it.n
	if it.k == kMap {
		n *= 2
	}
	for range n {
		if err := r.skip(depth + 1); err != nil {
			return err
		}
	}
	return nil
}

// jsonWriter writes JSON, indented by two spaces, to a bufio.Writer.
type jsonWriter struct {
	w *bufio.Writer
}

func (j *jsonWriter) newline(depth int) {
	j.w.WriteByte('\n')
	for range depth {
		j.w.WriteString("  ")
	}
}

func (j *jsonWriter) str(s []byte) {
	b, _ := json.Marshal(string(s)) // never fails on a string
	j.w.Write(b)
}

// base64 writes data as a JSON string of its standard base64, streamed:
// a value of hundreds of MB is never held a second time as text.
func (j *jsonWriter) base64(data []byte) {
	j.w.WriteByte('"')
	enc := base64.NewEncoder(base64.StdEncoding, j.w)
	enc.Write(data) // a bufio.Writer's errors are kept and returned by Flush
	enc.Close()
	j.w.WriteByte('"')
}

// scalar writes a non-container item.
func (j *jsonWriter) scalar(it item) {
	switch it.k {
	case kNil:
		j.w.WriteString("null")
	case kBool:
		j.w.WriteString(strconv.FormatBool(it.b))
	case kInt:
		j.w.WriteString(strconv.FormatInt(it.i, 10))
	case kUint:
		j.w.WriteString(strconv.FormatUint(it.u, 10))
	case kFloat:
		bits := 64
		if it.f32 {
			bits = 32
		}
		if math.IsNaN(it.f) || math.IsInf(it.f, 0) {
			j.str([]byte(strconv.FormatFloat(it.f, 'g', -1, bits)))
		} else {
			j.w.WriteString(strconv.FormatFloat(it.f, 'g', -1, bits))
		}
	case kStr:
		j.str(it.data)
	case kBin:
		j.base64(it.data)
	case kExt:
		if t, ok := timestamp(it); ok {
			j.str([]byte(t.UTC().Format(time.RFC3339Nano)))
			return
		}
		fmt.Fprintf(j.w, `{"msgpack_ext": %d, "data": `, it.ext)
		j.base64(it.data)
		j.w.WriteByte('}')
	}
}

// timestamp decodes extension -1, msgpack's timestamp.
func timestamp(it item) (time.Time, bool) {
	if it.ext != -1 {
		return time.Time{}, false
	}
	d := it.data
	switch len(d) {
	case 4:
		return time.Unix(int64(binary.BigEndian.Uint32(d)), 0), true
	case 8:
		n := binary.BigEndian.Uint64(d)
		return time.Unix(int64(n&(1<<34-1)), int64(n>>34)), n>>34 < 1e9
	case 12:
		ns := binary.BigEndian.Uint32(d)
		return time.Unix(int64(binary.BigEndian.Uint64(d[4:])), int64(ns)), ns < 1e9
	}
	return time.Time{}, false
}

// keyText returns a map key as JSON object keys need it: a string as
// itself, anything else as its compact JSON text.
func keyText(data []byte, depth int) (string, error) {
	r := &reader{b: data}
	it, err := r.head()
	if err != nil {
		return "", err
	}
	switch it.k {
	case kStr:
		return string(it.data), nil
	case kBin: // as a value is written, without the quotes
		return base64.StdEncoding.EncodeToString(it.data), nil
	}
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	r.pos = 0
	if err := (&jsonWriter{w: bw}).value(r, depth+1, -1); err != nil {
		return "", err
	}
	bw.Flush()
	s := buf.String()
	if len(s) > maxKeyText {
		cut := maxKeyText
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s, nil
}

// maxKeyText bounds the JSON text of a key that is not a string. A key
// holding a map whose keys hold maps would otherwise double at each level
// inside it, each escaping the quotes of the one below.
const maxKeyText = 1 << 10

// entry is one map entry: the spans of its key and value in the data.
type entry struct {
	key, val []byte
	text     string // the key as JSON needs it
}

// value writes the item at r as JSON, indented at depth (compact when
// depth < 0). Map entries come out sorted by key, as encoding/json sorts
// them.
func (j *jsonWriter) value(r *reader, depth int, indent int) error {
	if depth > maxDepth {
		return r.fail("nested deeper than %d", maxDepth)
	}
	it, err := r.head()
	if err != nil {
		return err
	}
	switch it.k {
	case kArray:
		if err := r.checkCount(it); err != nil {
			return err
		}
		j.w.WriteByte('[')
		for i := range it.n {
			if i > 0 {
				j.w.WriteByte(',')
			}
			if indent >= 0 {
				j.newline(indent + 1)
			}
			if err := j.value(r, depth+1, next(indent)); err != nil {
				return err
			}
		}
		j.close(']', int(it.n), indent)
	case kMap:
		if err := r.checkCount(it); err != nil {
			return err
		}
		entries := make([]entry, 0, min(it.n, 1<<16))
		for range it.n {
			k0 := r.pos
			if err := r.skip(depth + 1); err != nil {
				return err
			}
			v0 := r.pos
			if err := r.skip(depth + 1); err != nil {
				return err
			}
			entries = append(entries, entry{key: r.b[k0:v0], val: r.b[v0:r.pos]})
		}
		return j.object(entries, depth, indent)
	default:
		j.scalar(it)
	}
	return nil
}

// next is the indentation of what a container at indent holds: one
// more, up to maxIndent levels (past which output is compact, so that
// deep nesting does not cost output quadratic in its depth).
func next(indent int) int {
	if indent < 0 || indent >= maxIndent {
		return -1
	}
	return indent + 1
}

const maxIndent = 64

// object writes entries as a JSON object, sorted by key.
func (j *jsonWriter) object(entries []entry, depth, indent int) error {
	for i := range entries {
		t, err := keyText(entries[i].key, depth)
		if err != nil {
			return err
		}
		entries[i].text = t
	}
	slices.SortStableFunc(entries, func(a, b entry) int { return strings.Compare(a.text, b.text) })
	j.w.WriteByte('{')
	for i, e := range entries {
		if err := j.member(i, e.text, e.val, depth, indent); err != nil {
			return err
		}
	}
	j.close('}', len(entries), indent)
	return nil
}

// member writes the i-th member of an object: its key, as text, and the
// value at val.
func (j *jsonWriter) member(i int, text string, val []byte, depth, indent int) error {
	if i > 0 {
		j.w.WriteByte(',')
	}
	if indent >= 0 {
		j.newline(indent + 1)
	}
	j.str([]byte(text))
	j.w.WriteByte(':')
	if indent >= 0 {
		j.w.WriteByte(' ')
	}
	return j.value(&reader{b: val}, depth+1, next(indent))
}

// close ends an object or array of n members opened at indent.
func (j *jsonWriter) close(c byte, n, indent int) {
	if n > 0 && indent >= 0 {
		j.newline(indent)
	}
	j.w.WriteByte(c)
}
