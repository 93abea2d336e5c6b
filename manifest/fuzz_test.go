package manifest

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/fileheader"
)

// fixSums rewrites the header's and every frame's checksum, so that the
// fuzzer's inputs reach the payload decoder behind them (it cannot forge
// xxhash64).
func fixSums(d []byte) []byte {
	d = bytes.Clone(d)
	if len(d) < HeaderSize {
		return d
	}
	fileheader.Seal(d)
	for pos := HeaderSize; pos+FrameHeaderSize <= len(d); {
		l := int(le.Uint32(d[pos+4:]))
		if l > len(d)-pos-FrameHeaderSize {
			break
		}
		le.PutUint64(d[pos+8:], frameSum(d[pos+4:pos+8], d[pos+FrameHeaderSize:pos+FrameHeaderSize+l]))
		pos += FrameHeaderSize + l
	}
	return d
}

// requireDecodeError requires err to be corruption or a newer version,
// naming the file.
func requireDecodeError(t *testing.T, err error, file string) {
	t.Helper()
	if !errors.Is(err, errs.ErrCorrupt) && !errors.Is(err, errs.ErrUnsupportedVersion) || !strings.Contains(err.Error(), file) {
		t.Fatalf("error does not wrap ErrCorrupt or name %s: %v", file, err)
	}
}

// FuzzManifest replays arbitrary bytes as a manifest: an error naming the
// file, or records that round-trip through the writer; never a panic, and
// never more memory than a small multiple of the input.
func FuzzManifest(f *testing.F) {
	for _, name := range []string{"testdata/MANIFEST-000001", "testdata/MANIFEST-v1"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, false)
		f.Add(data, true)
	}
	const file = "MANIFEST-000009"
	f.Fuzz(func(t *testing.T, data []byte, fix bool) {
		if fix {
			data = fixSums(data)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		log, err := Replay(bytes.NewReader(data), int64(len(data)), file)
		runtime.ReadMemStats(&after)
		if got, limit := int64(after.TotalAlloc-before.TotalAlloc), 64*int64(len(data))+1<<20; got > limit {
			t.Fatalf("replaying %d bytes allocated %d", len(data), got)
		}
		if err != nil {
			requireDecodeError(t, err, file)
			return
		}
		if (log.Tail == TailClean) != (log.TailErr == nil) {
			t.Fatalf("tail %v, TailErr %v", log.Tail, log.TailErr)
		}
		// Records round-trip through the writer.
		var buf memFile
		w, err := Create(&buf, log.FileNum)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range log.Records {
			if _, err := w.Append(rec); err != nil {
				t.Fatalf("a replayed record does not encode: %v", err)
			}
		}
		again, err := ReplayBytes(buf.Bytes(), file)
		if err != nil {
			t.Fatalf("rewritten manifest does not replay: %v", err)
		}
		if again.Tail != TailClean || !reflect.DeepEqual(again.Records, log.Records) {
			t.Fatal("rewritten manifest replays to different records")
		}
	})
}

// FuzzCurrent decodes arbitrary bytes as CURRENT: an error naming it, or
// a file number whose encoding is exactly the input.
func FuzzCurrent(f *testing.F) {
	data, err := os.ReadFile("testdata/CURRENT")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data, false)
	f.Fuzz(func(t *testing.T, data []byte, _ bool) {
		num, err := DecodeCurrent(data, "CURRENT")
		if err != nil {
			requireDecodeError(t, err, "CURRENT")
			return
		}
		if !bytes.Equal(EncodeCurrent(num), data) {
			t.Fatalf("CURRENT naming %d does not round-trip", num)
		}
	})
}
