package segment

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/vmihailenco/msgpack/v5"
)

// The benchmarks measure a segment holding one large msgpack value
// against plain zstd on the same bytes, in the same run:
//
//	go test -run '^$' -bench . -benchtime 5x -count 5 ./segment
//
// INSTADUMP_BENCH_MB sets the payload size (200 by default).

type benchRec struct {
	Name    string
	ID      int64
	Count   int64
	Created time.Time
	Tags    []string
}

var (
	payloadOnce sync.Once
	payload     []byte
)

func benchPayload(b *testing.B) []byte {
	payloadOnce.Do(func() {
		mb := 200
		if s := os.Getenv("INSTADUMP_BENCH_MB"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				panic("INSTADUMP_BENCH_MB must be a positive integer, not " + s)
			}
			mb = n
		}
		rng := rand.New(rand.NewSource(1))
		tags := []string{"red", "green", "blue", "archived", "vip", "new"}
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		recs := make([]benchRec, 0, 1024)
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for i := 0; buf.Len() < mb<<20; i++ {
			r := benchRec{
				Name:    fmt.Sprintf("user-%08d", rng.Intn(100_000_000)),
				ID:      int64(i),
				Count:   rng.Int63n(1_000_000),
				Created: base.Add(time.Duration(rng.Int63n(int64(365 * 24 * time.Hour)))),
				Tags:    tags[:rng.Intn(5)],
			}
			recs = append(recs, r)
			if len(recs) == cap(recs) {
				if err := enc.Encode(recs); err != nil {
					panic(err)
				}
				recs = recs[:0]
			}
		}
		payload = buf.Bytes()
	})
	b.SetBytes(int64(len(payload)))
	return payload
}

func writeSegmentFile(b *testing.B, path string, raw []byte, sync bool) int64 {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f, 1, Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Add("state", raw); err != nil {
		b.Fatal(err)
	}
	info, err := w.Finish()
	if err != nil {
		b.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	return info.Size
}

func BenchmarkWrite(b *testing.B) {
	raw := benchPayload(b)
	dir := b.TempDir()
	b.Run("segment+fsync", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		var size int64
		for b.Loop() {
			size = writeSegmentFile(b, filepath.Join(dir, "w.seg"), raw, true)
		}
		b.ReportMetric(float64(len(raw))/float64(size), "ratio")
	})
	b.Run("segment", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			writeSegmentFile(b, filepath.Join(dir, "w.seg"), raw, false)
		}
	})
	b.Run("segment-discard", func(b *testing.B) {
		// The same, to io.Discard: the CPU side alone, as zstd-Writer.
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			w, err := NewWriter(io.Discard, 1, Options{})
			if err != nil {
				b.Fatal(err)
			}
			w.Add("state", raw)
			if _, err := w.Finish(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("zstd-EncodeAll", func(b *testing.B) {
		// Plain zstd: one EncodeAll call over the whole payload.
		b.SetBytes(int64(len(raw)))
		enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(false))
		dst := make([]byte, 0, len(raw))
		for b.Loop() {
			dst = enc.EncodeAll(raw, dst[:0])
		}
		b.ReportMetric(float64(len(raw))/float64(len(dst)), "ratio")
	})
	b.Run("zstd-Writer", func(b *testing.B) {
		// Plain zstd: klauspost's streaming Writer, GOMAXPROCS goroutines.
		b.SetBytes(int64(len(raw)))
		enc, _ := zstd.NewWriter(io.Discard, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(false))
		for b.Loop() {
			enc.Reset(io.Discard)
			if _, err := enc.Write(raw); err != nil {
				b.Fatal(err)
			}
			if err := enc.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkRead(b *testing.B) {
	raw := benchPayload(b)
	path := filepath.Join(b.TempDir(), "r.seg")
	writeSegmentFile(b, path, raw, true)
	b.Run("segment", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			fi, _ := f.Stat()
			r, err := Open(f, fi.Size(), path)
			if err != nil {
				b.Fatal(err)
			}
			got, err := r.Read(r.Entries()[0])
			if err != nil || len(got) != len(raw) {
				b.Fatal(err)
			}
			f.Close()
		}
	})
	b.Run("zstd-DecodeAll", func(b *testing.B) {
		// Plain zstd: one frame, decoded into a pre-sized buffer.
		b.SetBytes(int64(len(raw)))
		enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(false))
		comp := enc.EncodeAll(raw, nil)
		dec, _ := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(1<<40))
		dst := make([]byte, 0, len(raw))
		for b.Loop() {
			var err error
			if dst, err = dec.DecodeAll(comp, dst[:0]); err != nil || len(dst) != len(raw) {
				b.Fatal(err)
			}
		}
	})
}
