package segment

import (
	"bytes"
	"errors"
	"math"
	"math/rand"
	"runtime"
	"strings"
	"testing"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/golden"
	"github.com/vmihailenco/msgpack/v5"
)

type value struct {
	name string
	raw  []byte
}

func build(t testing.TB, id uint64, opts Options, vals []value) ([]byte, Info) {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, id, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vals {
		if err := w.Add(v.name, v.raw); err != nil {
			t.Fatal(err)
		}
	}
	info, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(buf.Len()) {
		t.Fatalf("Info.Size %d, wrote %d", info.Size, buf.Len())
	}
	return buf.Bytes(), info
}

func mustMsgpack(t testing.TB, v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randomBytes(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// smallValues is the content of the golden segment.
func smallValues(t testing.TB) []value {
	return []value{
		{"testvar1", mustMsgpack(t, 150)},
		{"testvar2", mustMsgpack(t, "abc")},
		{"accounts", mustMsgpack(t, []any{"alice", 100, "bob", 50})},
		{"empty", nil},
		{"log", mustMsgpack(t, strings.Repeat("all work and no play ", 20))},
	}
}

func checkAll(t testing.TB, data []byte, file string, vals []value) *Reader {
	t.Helper()
	r, err := Open(bytes.NewReader(data), int64(len(data)), file)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Entries()) != len(vals) {
		t.Fatalf("%d entries, want %d", len(r.Entries()), len(vals))
	}
	for _, v := range vals {
		e, ok := r.Find(v.name)
		if !ok {
			t.Fatalf("%q not found", v.name)
		}
		got, err := r.Read(e)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, v.raw) {
			t.Fatalf("%q: read %d bytes, want %d", v.name, len(got), len(v.raw))
		}
	}
	if err := r.Verify(); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRoundTrip(t *testing.T) {
	compressible := bytes.Repeat([]byte("instadump "), 100_000)
	random := randomBytes(300_000, 1)
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"default", Options{}},
		{"small chunks", Options{ChunkSize: 4096}},
		{"one worker", Options{Workers: 1, ChunkSize: 10_000}},
		{"none", Options{Level: LevelNone, ChunkSize: 50_000}},
		{"best", Options{Level: LevelBest}},
		// Values is a hint: a wrong one, or one past reason, changes nothing.
		{"values hinted", Options{Values: 7}},
		{"values hinted too few", Options{Values: 2}},
		{"values hinted negative", Options{Values: -1}},
		{"values hinted huge", Options{Values: math.MaxInt}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals := append(smallValues(t), value{"compressible", compressible}, value{"random", random})
			data, info := build(t, 42, tc.opts, vals)
			r := checkAll(t, data, "x.seg", vals)
			if r.ID() != 42 || info.ID != 42 {
				t.Fatalf("ID %d/%d", r.ID(), info.ID)
			}
			for i, e := range info.Entries {
				if e != r.Entries()[i] {
					t.Fatalf("Finish entry %d %+v, index says %+v", i, e, r.Entries()[i])
				}
			}
			if _, ok := r.Find("missing"); ok {
				t.Fatal("found a missing name")
			}
		})
	}
}

func TestEmptySegment(t *testing.T) {
	data, _ := build(t, 1, Options{}, nil)
	if len(data) != MinFileSize {
		t.Fatalf("empty segment is %d bytes, want %d", len(data), MinFileSize)
	}
	checkAll(t, data, "e.seg", nil)
}

func TestWriterRejects(t *testing.T) {
	w, err := NewWriter(&bytes.Buffer{}, 1, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add("", []byte{1}); err == nil {
		t.Fatal("empty name accepted")
	}
	if err := w.Add(strings.Repeat("n", MaxNameLen+1), []byte{1}); err == nil {
		t.Fatal("long name accepted")
	}
	if err := w.Add("a", []byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := w.Add("a", []byte{2}); err == nil {
		t.Fatal("duplicate name accepted")
	}
	if _, err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := w.Add("b", nil); !errors.Is(err, ErrFinished) {
		t.Fatalf("Add after Finish: %v", err)
	}
	if _, err := NewWriter(&bytes.Buffer{}, 1, Options{ChunkSize: MaxChunk + 1}); err == nil {
		t.Fatal("oversized chunk accepted")
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n < len(p) {
		n := f.n
		f.n = 0
		return n, errors.New("disk full")
	}
	f.n -= len(p)
	return len(p), nil
}

func TestWriterReportsWriteError(t *testing.T) {
	for _, limit := range []int{0, 10, 100, 5000} {
		w, err := NewWriter(&failWriter{n: limit}, 1, Options{})
		if err == nil {
			for _, v := range smallValues(t) {
				w.Add(v.name, v.raw)
			}
			w.Add("big", randomBytes(3<<20, 2))
			_, err = w.Finish()
		}
		if err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Fatalf("limit %d: %v, want the write error", limit, err)
		}
	}
}

// requireCorrupt checks err is a corruption (or version) error naming file.
func requireCorrupt(t *testing.T, err error, file, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	if !errors.Is(err, errs.ErrCorrupt) && !errors.Is(err, errs.ErrUnsupportedVersion) {
		t.Fatalf("%s: %v does not wrap errs.ErrCorrupt", what, err)
	}
	if !strings.Contains(err.Error(), file) {
		t.Fatalf("%s: %v does not name %s", what, err, file)
	}
	var ce *errs.CorruptError
	if errors.As(err, &ce) && (ce.Offset < 0 || ce.File != file) {
		t.Fatalf("%s: bad CorruptError %+v", what, ce)
	}
}

// readAll opens data and reads every value, returning the first error.
func readAll(data []byte, file string) ([][]byte, error) {
	r, err := Open(bytes.NewReader(data), int64(len(data)), file)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, e := range r.Entries() {
		b, err := r.Read(e)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, r.Verify()
}

func TestTruncatedAtEveryPrefix(t *testing.T) {
	data, _ := build(t, 7, Options{}, smallValues(t))
	for n := 0; n < len(data); n++ {
		_, err := readAll(data[:n], "t.seg")
		requireCorrupt(t, err, "t.seg", "prefix")
	}
}

func TestEveryByteFlipped(t *testing.T) {
	vals := smallValues(t)
	data, _ := build(t, 7, Options{ChunkSize: 64}, vals)
	want, err := readAll(data, "f.seg")
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		for _, mask := range []byte{0x01, 0x80, 0xFF} {
			bad := bytes.Clone(data)
			bad[i] ^= mask
			got, err := readAll(bad, "f.seg")
			if err == nil {
				// Never wrong data: only a change that leaves every value
				// intact could pass, and there is none.
				t.Fatalf("byte %d ^%#x: no error (values equal: %v)", i, mask, equalValues(got, want))
			}
			requireCorrupt(t, err, "f.seg", "flip")
		}
	}
}

func equalValues(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestErrorKinds(t *testing.T) {
	data, _ := build(t, 7, Options{}, smallValues(t))
	bad := bytes.Clone(data)
	bad[0] = 'X'
	if _, err := Open(bytes.NewReader(bad), int64(len(bad)), "m.seg"); !errors.Is(err, errs.ErrBadMagic) || !errors.Is(err, errs.ErrCorrupt) {
		t.Fatalf("bad magic: %v", err)
	}
	bad = bytes.Clone(data)
	bad[HeaderSize+20] ^= 1
	if _, err := readAll(bad, "c.seg"); !errors.Is(err, errs.ErrChecksum) {
		t.Fatalf("flipped value: %v, want errs.ErrChecksum", err)
	}
	// A newer version with a valid header checksum is not corruption.
	bad = appendHeader(nil, 7)
	le.PutUint16(bad[8:], Version+1)
	copy(bad, reheader(bad))
	bad = append(bad, data[HeaderSize:]...)
	_, err := Open(bytes.NewReader(bad), int64(len(bad)), "v.seg")
	if !errors.Is(err, errs.ErrUnsupportedVersion) || errors.Is(err, errs.ErrCorrupt) {
		t.Fatalf("newer version: %v", err)
	}
	// A file shorter than the size the caller claims.
	if _, err := Open(bytes.NewReader(data[:50]), int64(len(data)), "s.seg"); !errors.Is(err, errs.ErrCorrupt) {
		t.Fatalf("short file: %v", err)
	}
}

func reheader(h []byte) []byte {
	h = bytes.Clone(h[:HeaderSize])
	le.PutUint64(h[24:], xxhashSum(h[:24]))
	return h
}

func TestEntryFromElsewhereIsChecked(t *testing.T) {
	data, info := build(t, 7, Options{}, smallValues(t))
	r, err := Open(bytes.NewReader(data), int64(len(data)), "e.seg")
	if err != nil {
		t.Fatal(err)
	}
	e := info.Entries[0]
	for _, bad := range []Entry{
		{Name: "x", Offset: 0, StoredLen: 10, RawLen: 10},
		{Name: "x", Offset: e.Offset, StoredLen: 1 << 40, RawLen: 1},
		{Name: "x", Offset: -5, StoredLen: 1, RawLen: 1},
		{Name: "x", Offset: e.Offset, StoredLen: e.StoredLen, RawLen: 1 << 62, StoredSum: e.StoredSum},
		{Name: "x", Offset: e.Offset + 1, StoredLen: e.StoredLen - 1, RawLen: e.RawLen, StoredSum: e.StoredSum},
	} {
		if _, err := r.Read(bad); !errors.Is(err, errs.ErrCorrupt) {
			t.Fatalf("entry %+v: %v", bad, err)
		}
	}
}

func TestGolden(t *testing.T) {
	data, _ := build(t, 17, Options{}, smallValues(t))
	golden.Check(t, "golden.seg", data)
	checkAll(t, data, "golden.seg", smallValues(t))
}

func TestValueOver64MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 65 MiB value")
	}
	words := []string{"alpha ", "beta ", "gamma ", "delta ", "epsilon ", "zeta ", "eta ", "theta "}
	raw := make([]byte, 0, 65<<20+8)
	rng := rand.New(rand.NewSource(3))
	for len(raw) < 65<<20 { // compressible but not trivially
		raw = append(raw, words[rng.Intn(len(words))]...)
	}
	vals := []value{{"big", raw}, {"small", []byte{0xc0}}}
	data, _ := build(t, 9, Options{}, vals)
	if len(data) >= len(raw) {
		t.Fatalf("65 MiB compressed to %d bytes", len(data))
	}
	checkAll(t, data, "big.seg", vals)
}

func TestValueWriterStreams(t *testing.T) {
	big := randomBytes(100_000, 5)
	for _, chunk := range []int{4096, 10_000, 100_000, 1 << 20} {
		var buf bytes.Buffer
		w, _ := NewWriter(&buf, 1, Options{ChunkSize: chunk})
		vw, err := w.Value("streamed")
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Add("other", []byte{1}); err == nil {
			t.Fatal("Add while a value is open succeeded")
		}
		for lo := 0; lo < len(big); lo += 777 { // odd pieces across chunk boundaries
			vw.Write(big[lo:min(lo+777, len(big))])
		}
		if err := vw.Close(); err != nil {
			t.Fatal(err)
		}
		ev, _ := w.Value("empty")
		ev.Close()
		w.Add("added", big[:10])
		if _, err := w.Finish(); err != nil {
			t.Fatal(err)
		}
		checkAll(t, buf.Bytes(), "s.seg", []value{{"streamed", big}, {"empty", nil}, {"added", big[:10]}})
		// The streamed value is stored exactly as Add would store it.
		var ref bytes.Buffer
		rw, _ := NewWriter(&ref, 1, Options{ChunkSize: chunk})
		rw.Add("streamed", big)
		rw.Add("empty", nil)
		rw.Add("added", big[:10])
		rw.Finish()
		if !bytes.Equal(ref.Bytes(), buf.Bytes()) {
			t.Fatalf("chunk %d: streaming wrote different bytes from Add", chunk)
		}
	}
}

// A value copied with ReadStored and AddStored reads back the same, and
// its entry matches the original's but for its offset.
func TestAddStoredCopies(t *testing.T) {
	vals := append(smallValues(t), value{"random", randomBytes(200_000, 4)})
	data, info := build(t, 3, Options{ChunkSize: 50_000}, vals)
	r, err := Open(bytes.NewReader(data), int64(len(data)), "a.seg")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, 4, Options{})
	w.Add("fresh", []byte{1, 2, 3})
	for _, e := range info.Entries {
		stored, err := r.ReadStored(e)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.AddStored(e.Name, stored, e.RawLen, e.RawSum); err != nil {
			t.Fatal(err)
		}
	}
	copied, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	checkAll(t, buf.Bytes(), "b.seg", append(vals, value{"fresh", []byte{1, 2, 3}}))
	for _, e := range info.Entries {
		for _, c := range copied.Entries {
			if c.Name == e.Name && (c.StoredLen != e.StoredLen || c.StoredSum != e.StoredSum || c.RawSum != e.RawSum) {
				t.Fatalf("%q copied as %+v, was %+v", e.Name, c, e)
			}
		}
	}
}

// Abort stops the writer wherever it is, even with a value open, and
// leaves it refusing everything.
func TestAbort(t *testing.T) {
	w, _ := NewWriter(&bytes.Buffer{}, 1, Options{ChunkSize: 4096})
	w.Add("a", randomBytes(50_000, 1))
	vw, _ := w.Value("b")
	vw.Write(randomBytes(10_000, 2))
	w.Abort()
	w.Abort()
	if _, err := w.Finish(); !errors.Is(err, ErrFinished) {
		t.Fatalf("Finish after Abort: %v", err)
	}
	if err := w.Add("c", nil); !errors.Is(err, ErrFinished) {
		t.Fatalf("Add after Abort: %v", err)
	}
	if _, err := vw.Write([]byte{1}); !errors.Is(err, ErrFinished) {
		t.Fatalf("Write after Abort: %v", err)
	}
}

// Chunks of random bytes are stored raw, found by samples; compressible
// ones and mixed ones are compressed; tiny ones are stored raw, however
// compressible.
func TestIncompressibleStoredRaw(t *testing.T) {
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog "), 30_000)[:1<<20]
	random := randomBytes(1<<20, 9)
	mixed := append(bytes.Clone(random[:1<<19]), text[:1<<19]...)
	vals := []value{{"random", random}, {"text", text}, {"mixed", mixed},
		{"tiny", make([]byte, tinyChunk-1)}, {"small", make([]byte, tinyChunk)}}
	data, info := build(t, 1, Options{ChunkSize: 1 << 20}, vals)
	checkAll(t, data, "i.seg", vals)
	for _, e := range info.Entries {
		codec := data[e.Offset]
		want := map[string]byte{"random": codecNone, "text": codecZstd, "mixed": codecZstd, "tiny": codecNone, "small": codecZstd}
		if codec != want[e.Name] {
			t.Fatalf("%s stored with codec %d, want %d", e.Name, codec, want[e.Name])
		}
	}
}

// craftHuge builds a segment whose checksums all hold but whose one value
// has n chunks each declaring MaxChunk raw bytes from a few bytes of
// garbage: an index that declares far more than the file can back.
func craftHuge(n int) []byte {
	var body []byte
	for range n {
		body = appendChunkHeader(body, codecZstd, MaxChunk, 8)
		body = append(body, 0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0)
	}
	e := Entry{Name: "huge", Offset: HeaderSize, StoredLen: int64(len(body)), RawLen: int64(n) * MaxChunk, StoredSum: xxhashSum(body)}
	data := append(appendHeader(nil, 5), body...)
	index := make([]byte, 4)
	le.PutUint32(index, 1)
	index = appendEntry(index, &e)
	return appendTrailer(append(data, index...), int64(len(data)), int64(len(index)), xxhashSum(index), 5)
}

// Reading such a value fails as corrupt without allocating what it
// declares (here 1 TiB).
func TestDeclaredLengthsAreNotTrusted(t *testing.T) {
	data := craftHuge(1 << 16)
	r, err := Open(bytes.NewReader(data), int64(len(data)), "h.seg")
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, e := range r.Entries() {
		if _, err := r.Read(e); !errors.Is(err, errs.ErrCorrupt) {
			t.Fatalf("Read: %v", err)
		}
		if err := r.Check(e); !errors.Is(err, errs.ErrCorrupt) {
			t.Fatalf("Check: %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 256<<20 {
		t.Fatalf("reading a %d-byte file allocated %d bytes", len(data), got)
	}
}
