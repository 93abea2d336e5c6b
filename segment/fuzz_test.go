package segment

import (
	"bytes"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/instadump/instadump/internal/fileheader"
)

// fixSums rewrites every checksum the input's own structure points at.
// The fuzzer cannot forge xxhash64, so without this inputs that fail a
// checksum would never reach the parsers of indexes and chunks behind it.
func fixSums(d []byte) []byte {
	d = bytes.Clone(d)
	if len(d) < MinFileSize {
		return d
	}
	fileheader.Seal(d)
	t := d[len(d)-TrailerSize:]
	toff := uint64(len(d) - TrailerSize)
	ioff, ilen := le.Uint64(t[0:]), le.Uint64(t[8:])
	if ioff <= toff && ilen <= toff-ioff {
		index := d[ioff : ioff+ilen]
		// Value checksums first: they are inside the index.
		for pos := 4; pos+EntryHeaderSize <= len(index); {
			h := index[pos:]
			off, n := le.Uint64(h[4:]), le.Uint64(h[12:])
			if off <= ioff && n <= ioff-off {
				le.PutUint64(h[28:], xxhash.Sum64(d[off:off+n]))
			}
			pos += EntryHeaderSize + int(le.Uint16(h[0:]))
		}
		le.PutUint64(t[16:], xxhash.Sum64(index))
	}
	le.PutUint64(t[32:], xxhash.Sum64(t[:32]))
	return d
}

// FuzzSegment opens arbitrary bytes as a segment and reads every value:
// the reader must return the right bytes or an error wrapping ErrCorrupt
// (or ErrUnsupportedVersion) that names the file, never panic, and never
// allocate more than the input can back; what it reads must round-trip
// through the writer.
func FuzzSegment(f *testing.F) {
	golden, err := os.ReadFile("testdata/golden.seg")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden, false)
	f.Add(golden, true)
	f.Add(craftHuge(3), false)
	for _, opts := range []Options{{ChunkSize: 16}, {Level: LevelNone, ChunkSize: 7}} {
		var buf bytes.Buffer
		w, _ := NewWriter(&buf, 3, opts)
		w.Add("a", []byte(strings.Repeat("abcabcabc", 9)))
		w.Add("b", nil)
		w.Add("c", []byte{0xc0})
		if _, err := w.Finish(); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes(), false)
		f.Add(buf.Bytes(), true)
	}
	const file = "000017.seg"
	f.Fuzz(func(t *testing.T, data []byte, fix bool) {
		if fix {
			data = fixSums(data)
		}
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		// Bytes a value may legitimately decompress to, beyond the input.
		var rawTotal int64
		defer func() {
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if got, limit := int64(after.TotalAlloc-before.TotalAlloc), 2*trustedRatio*int64(len(data))+4*rawTotal+64<<20; got > limit {
				t.Fatalf("reading %d bytes allocated %d (limit %d)", len(data), got, limit)
			}
		}()
		r, err := Open(bytes.NewReader(data), int64(len(data)), file)
		if err != nil {
			requireCorrupt(t, err, file, "open")
			return
		}
		var raws [][]byte
		for _, e := range r.Entries() {
			raw, err := r.Read(e)
			if err != nil {
				requireCorrupt(t, err, file, "read")
				if r.Check(e) == nil {
					t.Fatalf("Read of %q failed (%v) but Check passes", e.Name, err)
				}
				return
			}
			if r.Check(e) != nil {
				t.Fatalf("%q reads but Check fails", e.Name)
			}
			raws = append(raws, raw)
			rawTotal += e.RawLen
		}
		if err := r.Verify(); err != nil {
			t.Fatalf("every value reads but Verify fails: %v", err)
		}

		// Valid input round-trips through the writer.
		var buf bytes.Buffer
		w, err := NewWriter(&buf, r.ID(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range r.Entries() {
			if err := w.Add(e.Name, raws[i]); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.Finish(); err != nil {
			t.Fatal(err)
		}
		r2, err := Open(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "rewritten.seg")
		if err != nil {
			t.Fatalf("rewritten segment does not open: %v", err)
		}
		if r2.ID() != r.ID() || len(r2.Entries()) != len(raws) {
			t.Fatalf("rewritten segment: ID %d, %d entries", r2.ID(), len(r2.Entries()))
		}
		for i, e := range r2.Entries() {
			raw, err := r2.Read(e)
			if err != nil || e.Name != r.Entries()[i].Name || !bytes.Equal(raw, raws[i]) {
				t.Fatalf("rewritten value %d (%q) differs: %v", i, e.Name, err)
			}
		}
	})
}
