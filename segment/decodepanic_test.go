package segment

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/instadump/instadump/internal/errs"
	"github.com/klauspost/compress/zstd"
)

// A decompressor that panics on a chunk's bytes is corruption of that
// chunk on every path that decompresses, whichever goroutine it runs on:
// Read of one chunk, of many in parallel, of a value grown chunk by
// chunk, and Check. The decoder that panicked is not handed out again.
func TestDecoderPanicIsCorruption(t *testing.T) {
	vals := []value{
		{"one", []byte(strings.Repeat("one chunk ", 100))},
		{"many", []byte(strings.Repeat("many chunks ", 1000))},
		{"growing", make([]byte, MaxChunk+4<<20)}, // zeros: past trustedRatio
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, 3, Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.Add(vals[0].name, vals[0].raw)
	w.Add(vals[2].name, vals[2].raw)
	if _, err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	small, _ := build(t, 4, Options{ChunkSize: 1024}, vals[1:2])

	var (
		mu       sync.Mutex // chunks of one value decode in parallel
		panicked []*zstd.Decoder
	)
	decodeAll = func(d *zstd.Decoder, src, dst []byte) ([]byte, error) {
		mu.Lock()
		panicked = append(panicked, d)
		mu.Unlock()
		panic("crafted chunk")
	}
	defer func() { decodeAll = (*zstd.Decoder).DecodeAll }()

	for _, seg := range []struct {
		file string
		data []byte
	}{{"3.seg", buf.Bytes()}, {"4.seg", small}} {
		r, err := Open(bytes.NewReader(seg.data), int64(len(seg.data)), seg.file)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range r.Entries() {
			if e.Name == "many" && e.StoredLen < 3*ChunkHeaderSize {
				t.Fatalf("%q is not cut into chunks", e.Name)
			}
			if e.Name == "growing" && e.RawLen <= trustedRatio*e.StoredLen+MaxChunk {
				t.Fatalf("%q would not be decoded growing: raw %d, stored %d", e.Name, e.RawLen, e.StoredLen)
			}
			_, rerr := r.Read(e)
			cerr := r.Check(e)
			for what, err := range map[string]error{"Read": rerr, "Check": cerr} {
				var ce *errs.CorruptError
				if !errors.Is(err, errs.ErrCorrupt) || !errors.As(err, &ce) || ce.File != seg.file ||
					ce.Offset < e.Offset || ce.Offset >= e.Offset+e.StoredLen || !strings.Contains(ce.Reason, "panicked") {
					t.Errorf("%s of %q: %v", what, e.Name, err)
				}
				if e.Name != "many" && ce != nil && ce.Offset != e.Offset {
					t.Errorf("%s of %q: offset %d, want the first chunk's, %d", what, e.Name, ce.Offset, e.Offset)
				}
			}
		}
	}
	if len(panicked) == 0 {
		t.Fatal("no chunk was decompressed")
	}
	cur := zstdDecoder()
	for _, d := range panicked {
		if d == cur {
			t.Fatal("the decoder that panicked is handed out again")
		}
	}
	// The fresh decoder decodes.
	decodeAll = (*zstd.Decoder).DecodeAll
	checkAll(t, buf.Bytes(), "3.seg", []value{vals[0], vals[2]})
}
