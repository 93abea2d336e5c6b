package fuzz

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

// checkDecodeError requires err to be a corruption or version error that
// names file.
func checkDecodeError(t *testing.T, err error, file string) {
	t.Helper()
	if !errors.Is(err, errs.ErrCorrupt) && !errors.Is(err, errs.ErrUnsupportedVersion) {
		t.Fatalf("error does not wrap ErrCorrupt: %v", err)
	}
	if !strings.Contains(err.Error(), file) {
		t.Fatalf("error does not name %s: %v", file, err)
	}
}

// allocBound fails if decoding allocated far more than its input
// justifies. The constant covers the zstd decoder's own buffers.
func allocBound(t *testing.T, before *runtime.MemStats, inputLen int, extra int64) {
	t.Helper()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if got, limit := int64(after.TotalAlloc-before.TotalAlloc), 16*int64(inputLen)+extra+64<<20; got > limit {
		t.Fatalf("decoding %d bytes allocated %d bytes (limit %d)", inputLen, got, limit)
	}
}

func addFile(f *testing.F, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		f.Fatalf("seed %s: %v", path, err)
	}
	f.Add(data, false)
	f.Add(data, true)
}

func FuzzSegment(f *testing.F) {
	addFile(f, "../segment/testdata/golden.seg")
	for _, opts := range []segment.Options{{ChunkSize: 16}, {Level: segment.LevelNone, ChunkSize: 7}} {
		var buf bytes.Buffer
		w, _ := segment.NewWriter(&buf, 3, opts)
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
			data = fixSegmentSums(data)
		}
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		r, err := segment.Open(bytes.NewReader(data), int64(len(data)), file)
		if err != nil {
			checkDecodeError(t, err, file)
			return
		}
		type kv struct {
			e   segment.Entry
			raw []byte
		}
		var vals []kv
		var rawTotal int64
		for _, e := range r.Entries() {
			raw, err := r.Read(e)
			if err != nil {
				checkDecodeError(t, err, file)
				if r.Verify() == nil {
					t.Fatalf("Read of %q failed (%v) but Verify passes", e.Name, err)
				}
				return
			}
			vals = append(vals, kv{e, raw})
			rawTotal += e.RawLen
		}
		if err := r.Verify(); err != nil {
			t.Fatalf("every value reads but Verify fails: %v", err)
		}
		allocBound(t, &before, len(data), 2*rawTotal)

		// Valid input round-trips through the writer.
		var buf bytes.Buffer
		w, err := segment.NewWriter(&buf, r.ID(), segment.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			if err := w.Add(v.e.Name, v.raw); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.Finish(); err != nil {
			t.Fatal(err)
		}
		r2, err := segment.Open(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "rewritten.seg")
		if err != nil {
			t.Fatalf("rewritten segment does not open: %v", err)
		}
		if r2.ID() != r.ID() || len(r2.Entries()) != len(vals) {
			t.Fatalf("rewritten segment: ID %d, %d entries", r2.ID(), len(r2.Entries()))
		}
		for i, e := range r2.Entries() {
			raw, err := r2.Read(e)
			if err != nil || e.Name != vals[i].e.Name || e.RawSum != vals[i].e.RawSum || !bytes.Equal(raw, vals[i].raw) {
				t.Fatalf("rewritten value %d (%q) differs: %v", i, e.Name, err)
			}
		}
	})
}

func FuzzManifest(f *testing.F) {
	addFile(f, "../manifest/testdata/MANIFEST-000001")
	const file = "MANIFEST-000009"
	f.Fuzz(func(t *testing.T, data []byte, fix bool) {
		if fix {
			data = fixManifestSums(data)
		}
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		rep, err := manifest.Replay(bytes.NewReader(data), int64(len(data)), file, 0)
		if err != nil {
			checkDecodeError(t, err, file)
			return
		}
		allocBound(t, &before, len(data), 0)
		if rep.ValidEnd < manifest.HeaderSize || rep.ValidEnd > int64(len(data)) {
			t.Fatalf("ValidEnd %d outside [%d, %d]", rep.ValidEnd, manifest.HeaderSize, len(data))
		}
		if (rep.Tail == manifest.TailClean) != (rep.ValidEnd == int64(len(data))) || (rep.Tail == manifest.TailClean) != (rep.TailErr == nil) {
			t.Fatalf("tail %v, TailErr %v, ValidEnd %d of %d", rep.Tail, rep.TailErr, rep.ValidEnd, len(data))
		}
		// The valid part replays alone to the same records, with a clean tail.
		again, err := manifest.ReplayBytes(data[:rep.ValidEnd], file, 0)
		if err != nil || again.Tail != manifest.TailClean || !reflect.DeepEqual(again.Records, rep.Records) {
			t.Fatalf("valid prefix replays differently: %v", err)
		}
		// Records round-trip through the writer.
		var buf fileBuf
		w, err := manifest.Create(&buf, rep.FileNum)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range rep.Records {
			if _, err := w.Append(rec); err != nil {
				t.Fatalf("a replayed record does not encode: %v", err)
			}
		}
		rt, err := manifest.ReplayBytes(buf.Bytes(), file, 0)
		if err != nil {
			t.Fatalf("rewritten manifest does not replay: %v", err)
		}
		if !reflect.DeepEqual(rt.Records, rep.Records) || !reflect.DeepEqual(rt.Snapshots, withOffsets(rep.Snapshots, rt.Offsets)) {
			t.Fatal("rewritten manifest replays to different records")
		}
	})
}

func withOffsets(s []manifest.Snapshot, offs []int64) []manifest.Snapshot {
	if s == nil {
		return nil
	}
	out := make([]manifest.Snapshot, len(s))
	for i := range s {
		out[i] = s[i]
		out[i].Offset = offs[i]
	}
	return out
}

type fileBuf struct{ bytes.Buffer }

func (*fileBuf) Sync() error { return nil }

func FuzzCurrent(f *testing.F) {
	addFile(f, "../manifest/testdata/CURRENT")
	f.Fuzz(func(t *testing.T, data []byte, _ bool) {
		num, err := manifest.DecodeCurrent(data, "CURRENT")
		if err != nil {
			checkDecodeError(t, err, "CURRENT")
			return
		}
		if !bytes.Equal(manifest.EncodeCurrent(num), data) {
			t.Fatalf("CURRENT naming %d does not round-trip", num)
		}
	})
}
