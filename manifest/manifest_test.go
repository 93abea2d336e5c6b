package manifest

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/instadump/instadump/segment"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

type memFile struct{ bytes.Buffer }

func (*memFile) Sync() error { return nil }

func ref(name string, seg uint64, off int64, since uint64) StateRef {
	return StateRef{Segment: seg, Since: since, Entry: segment.Entry{
		Name: name, Offset: off, StoredLen: 20, RawLen: 30, StoredSum: 0x1122334455667788 ^ uint64(off), RawSum: uint64(seg) << 32,
	}}
}

var t0 = time.Date(2026, 11, 25, 8, 0, 0, 123456789, time.UTC)

// sampleRecords: three snapshots, the later two as deltas.
func sampleRecords() []Record {
	return []Record{
		{Kind: Full, Snapshot: 1, Time: t0, NextSegment: 2, Written: 4000, States: []StateRef{ref("a", 1, 32, 1), ref("b", 1, 52, 1), ref("c", 1, 72, 1)}},
		{Kind: Delta, Snapshot: 2, Time: t0.Add(time.Second), NextSegment: 3, States: []StateRef{ref("a", 2, 32, 2)}, Removed: []string{"c"}},
		{Kind: Delta, Snapshot: 3, Time: t0.Add(2 * time.Second), NextSegment: 4, Written: 123, Retained: 1, States: []StateRef{ref("d", 3, 32, 3), ref("b", 3, 52, 3)}},
	}
}

func writeLog(t testing.TB, num uint64, recs []Record) []byte {
	t.Helper()
	var f memFile
	w, err := Create(&f, num)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if _, err := w.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if w.Size() != int64(f.Len()) {
		t.Fatalf("Size %d, wrote %d", w.Size(), f.Len())
	}
	return f.Bytes()
}

func replay(t testing.TB, data []byte, keep int) *Replayed {
	t.Helper()
	rep, err := ReplayBytes(data, "MANIFEST-000001", keep)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestRoundTripAndFold(t *testing.T) {
	recs := sampleRecords()
	data := writeLog(t, 1, recs)
	rep := replay(t, data, 0)
	if rep.FileNum != 1 || rep.Tail != TailClean || rep.ValidEnd != int64(len(data)) || rep.TailErr != nil {
		t.Fatalf("replay: num %d tail %v end %d/%d", rep.FileNum, rep.Tail, rep.ValidEnd, len(data))
	}
	if !reflect.DeepEqual(rep.Records, recs) {
		t.Fatalf("records differ:\n%+v\n%+v", rep.Records, recs)
	}
	want := []map[string]StateRef{
		{"a": ref("a", 1, 32, 1), "b": ref("b", 1, 52, 1), "c": ref("c", 1, 72, 1)},
		{"a": ref("a", 2, 32, 2), "b": ref("b", 1, 52, 1)},
		{"a": ref("a", 2, 32, 2), "b": ref("b", 3, 52, 3), "d": ref("d", 3, 32, 3)},
	}
	for i, s := range rep.Snapshots {
		if s.ID != uint64(i+1) || !reflect.DeepEqual(s.States, want[i]) || s.Offset != rep.Offsets[i] {
			t.Fatalf("snapshot %d: %+v", i+1, s)
		}
	}
	// The last record's floor drops older snapshots.
	floored := append([]Record(nil), recs...)
	floored[2].Retained = 2
	if s := replay(t, writeLog(t, 1, floored), 0).Snapshots; len(s) != 2 || s[0].ID != 2 {
		t.Fatalf("retained floor 2: %d snapshots", len(s))
	}
	if kept := replay(t, data, 2).Snapshots; len(kept) != 2 || kept[0].ID != 2 || kept[1].ID != 3 {
		t.Fatalf("keep 2: %+v", kept)
	}
	// Diff and FullRecord reproduce the records.
	if d := Diff(&rep.Snapshots[0], &rep.Snapshots[1]); !reflect.DeepEqual(d, recs[1]) {
		t.Fatalf("Diff: %+v", d)
	}
	full := FullRecord(&rep.Snapshots[2])
	again := replay(t, writeLog(t, 1, []Record{full}), 0)
	if !reflect.DeepEqual(again.Snapshots[0].States, want[2]) {
		t.Fatal("FullRecord does not reproduce the snapshot")
	}
}

func TestWriterRefusesBadRecords(t *testing.T) {
	good := sampleRecords()[0]
	for i, mod := range []func(*Record){
		func(r *Record) { r.Kind = 9 },
		func(r *Record) { r.Snapshot = 0 },
		func(r *Record) { r.Removed = []string{"x"} },
		func(r *Record) { r.States = append(r.States, r.States[0]) },
		func(r *Record) { r.States[0].Name = "" },
		func(r *Record) { r.States[0].Segment = 0 },
		func(r *Record) { r.States[0].Since = 5 },
		func(r *Record) { r.States[0].Offset = -1 },
		func(r *Record) { r.Time = time.Time{} },
	} {
		r := good
		r.States = append([]StateRef(nil), good.States...)
		mod(&r)
		if _, err := Create(&memFile{}, 1); err != nil {
			t.Fatal(err)
		}
		w, _ := Create(&memFile{}, 1)
		if _, err := w.Append(r); err == nil {
			t.Fatalf("case %d: bad record accepted", i)
		}
	}
}

// check requires err to be corruption naming the manifest.
func requireCorrupt(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("%s: %v, want ErrCorrupt", what, err)
	}
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.File != "MANIFEST-000001" || !strings.Contains(err.Error(), "MANIFEST-000001") {
		t.Fatalf("%s: %v does not name the file", what, err)
	}
}

// A manifest cut at every byte of its last record, or with that record
// zeroed, replays to the snapshot before it and reports a torn tail.
func TestTornTail(t *testing.T) {
	recs := sampleRecords()
	data := writeLog(t, 1, recs)
	lastOff := replay(t, data, 0).Offsets[2]
	for cut := lastOff; cut < int64(len(data)); cut++ {
		for _, tail := range [][]byte{nil, make([]byte, int64(len(data))-cut)} {
			torn := append(bytes.Clone(data[:cut]), tail...)
			rep, err := ReplayBytes(torn, "MANIFEST-000001", 0)
			if err != nil {
				t.Fatalf("cut at %d (+%d zeros): %v", cut, len(tail), err)
			}
			wantTail := cut != lastOff || len(tail) > 0
			if len(rep.Records) != 2 || rep.ValidEnd != lastOff || (rep.Tail != TailClean) != wantTail {
				t.Fatalf("cut at %d (+%d zeros): %d records, end %d, tail %v", cut, len(tail), len(rep.Records), rep.ValidEnd, rep.Tail)
			}
			if wantTail && !errors.Is(rep.TailErr, ErrCorrupt) {
				t.Fatalf("TailErr %v", rep.TailErr)
			}
		}
	}
}

// Flipping any byte gives an error wrapping ErrCorrupt, or (inside the
// last record) a torn tail with the records before it: never a record
// that differs from what was written.
func TestEveryByteFlipped(t *testing.T) {
	recs := sampleRecords()
	data := writeLog(t, 1, recs)
	lastOff := int(replay(t, data, 0).Offsets[2])
	for i := range data {
		for _, mask := range []byte{0x01, 0x40, 0xFF} {
			bad := bytes.Clone(data)
			bad[i] ^= mask
			rep, err := ReplayBytes(bad, "MANIFEST-000001", 0)
			if err != nil {
				requireCorrupt(t, err, fmt.Sprintf("byte %d ^%#x", i, mask))
				continue
			}
			if i < lastOff {
				t.Fatalf("byte %d ^%#x before the last record: no error", i, mask)
			}
			if rep.Tail == TailClean || !reflect.DeepEqual(rep.Records, recs[:2]) {
				t.Fatalf("byte %d ^%#x: tail %v, %d records", i, mask, rep.Tail, len(rep.Records))
			}
		}
	}
}

func TestMiddleRecordDamageIsCorruption(t *testing.T) {
	data := writeLog(t, 1, sampleRecords())
	offs := replay(t, data, 0).Offsets
	for _, damage := range []func([]byte){
		func(b []byte) { b[offs[1]+20] ^= 1 },                                      // payload
		func(b []byte) { b[offs[1]+5] ^= 0x10 },                                    // length
		func(b []byte) { copy(b[offs[1]:offs[2]], make([]byte, offs[2]-offs[1])) }, // zeroed
	} {
		bad := bytes.Clone(data)
		damage(bad)
		_, err := ReplayBytes(bad, "MANIFEST-000001", 0)
		requireCorrupt(t, err, "middle record")
		var ce *CorruptError
		errors.As(err, &ce)
		if ce.Offset != offs[1] {
			t.Fatalf("error at offset %d, want %d: %v", ce.Offset, offs[1], err)
		}
	}
}

func TestTruncatedAtEveryPrefix(t *testing.T) {
	data := writeLog(t, 1, sampleRecords())
	offs := replay(t, data, 0).Offsets
	for n := 0; n < len(data); n++ {
		rep, err := ReplayBytes(data[:n], "MANIFEST-000001", 0)
		if n < HeaderSize {
			requireCorrupt(t, err, "short header")
			continue
		}
		if err != nil {
			t.Fatalf("prefix %d: %v", n, err)
		}
		want := 0
		for _, o := range offs[1:] {
			if int64(n) >= o {
				want++
			}
		}
		if n == len(data) {
			want = 3
		}
		if len(rep.Records) != want {
			t.Fatalf("prefix %d: %d records, want %d", n, len(rep.Records), want)
		}
	}
}

// reframe appends raw fields to a valid record's payload.
func reframe(t *testing.T, rec Record, extra []byte) []byte {
	p, err := rec.AppendPayload(nil)
	if err != nil {
		t.Fatal(err)
	}
	return appendFrame(appendHeader(nil, 1), append(p, extra...))
}

func TestUnknownFields(t *testing.T) {
	rec := sampleRecords()[0]
	// A skippable field is ignored.
	rep := replay(t, reframe(t, rec, appendField(nil, 100, []byte("future"))), 0)
	if !reflect.DeepEqual(rep.Records[0], rec) {
		t.Fatal("skippable field changed the record")
	}
	// A required one is refused as a newer version, not as corruption.
	_, err := ReplayBytes(reframe(t, rec, appendField(nil, 9, []byte{1})), "MANIFEST-000001", 0)
	if !errors.Is(err, ErrUnsupportedVersion) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("unknown required field: %v", err)
	}
	// So is one inside a state.
	st := appendField(nil, stName, []byte("z"))
	for tag := uint64(stSegment); tag <= stSince; tag++ {
		if tag == stStoredSum || tag == stRawSum {
			st = appendFixedField(st, tag, 1)
		} else {
			st = appendUvarintField(st, tag, 1)
		}
	}
	if rep := replay(t, reframe(t, rec, appendField(nil, tagState, appendField(bytes.Clone(st), 70, nil))), 0); len(rep.Records[0].States) != 4 {
		t.Fatal("state with a skippable field lost")
	}
	_, err = ReplayBytes(reframe(t, rec, appendField(nil, tagState, appendField(st, 12, nil))), "MANIFEST-000001", 0)
	if !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("unknown required state field: %v", err)
	}
	// A repeated single field is corruption.
	_, err = ReplayBytes(reframe(t, rec, appendUvarintField(nil, tagSnapshot, 7)), "MANIFEST-000001", 0)
	requireCorrupt(t, err, "repeated field")
}

func TestChainChecks(t *testing.T) {
	recs := sampleRecords()
	for name, bad := range map[string][]Record{
		"delta first":    {recs[1]},
		"ID goes back":   {recs[0], recs[2], recs[1]},
		"remove missing": {recs[0], recs[1], {Kind: Delta, Snapshot: 4, Time: t0, Removed: []string{"c"}}},
		"same ID twice":  {recs[0], recs[0]},
	} {
		_, err := ReplayBytes(writeLog(t, 1, bad), "MANIFEST-000001", 0)
		requireCorrupt(t, err, name)
	}
}

func TestHeaderErrors(t *testing.T) {
	data := writeLog(t, 1, sampleRecords())
	bad := bytes.Clone(data)
	bad[1] = 'X'
	if _, err := ReplayBytes(bad, "MANIFEST-000001", 0); !errors.Is(err, ErrBadMagic) {
		t.Fatalf("bad magic: %v", err)
	}
	bad = bytes.Clone(data)
	le.PutUint16(bad[8:], 2)
	h := appendHeader(nil, 1)
	le.PutUint16(h[8:], 2)
	le.PutUint64(h[24:], xxhashSum(h[:24]))
	copy(bad, h)
	if _, err := ReplayBytes(bad, "MANIFEST-000001", 0); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("newer version: %v", err)
	}
	// Replay through a ReaderAt that is shorter than claimed.
	if _, err := Replay(bytes.NewReader(data[:40]), int64(len(data)), "MANIFEST-000001", 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short reader: %v", err)
	}
}

func TestCurrent(t *testing.T) {
	data := EncodeCurrent(4)
	if want := "instadump CURRENT 1\nMANIFEST-000004\nxxh64 "; !strings.HasPrefix(string(data), want) {
		t.Fatalf("CURRENT is %q", data)
	}
	if n, err := DecodeCurrent(data, "CURRENT"); err != nil || n != 4 {
		t.Fatalf("decode: %d %v", n, err)
	}
	if n, err := DecodeCurrent(EncodeCurrent(1234567), "CURRENT"); err != nil || n != 1234567 {
		t.Fatalf("decode big: %d %v", n, err)
	}
	for n := 0; n < len(data); n++ {
		if _, err := DecodeCurrent(data[:n], "CURRENT"); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "CURRENT") {
			t.Fatalf("prefix %d: %v", n, err)
		}
	}
	for i := range data {
		bad := bytes.Clone(data)
		bad[i] ^= 0x04
		if _, err := DecodeCurrent(bad, "CURRENT"); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip %d: %v", i, err)
		}
	}
	// A flipped letter case in the checksum parses to the same number:
	// still damage (found by the bit-flip tests).
	upper := strings.ToUpper(string(data[len(data)-17:]))
	if _, err := DecodeCurrent(append(bytes.Clone(data[:len(data)-17]), upper...), "CURRENT"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("upper-case checksum: %v", err)
	}
	v2 := strings.Replace(string(data), "CURRENT 1", "CURRENT 2", 1)
	body := v2[:strings.LastIndex(v2, "xxh64")]
	v2 = body + fmt.Sprintf("xxh64 %016x\n", xxhashSumString(body))
	if _, err := DecodeCurrent([]byte(v2), "CURRENT"); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("CURRENT version 2: %v", err)
	}
}

func TestFileNames(t *testing.T) {
	if FileName(4) != "MANIFEST-000004" {
		t.Fatal(FileName(4))
	}
	for name, want := range map[string]uint64{"MANIFEST-000004": 4, "MANIFEST-1234567": 1234567} {
		if n, ok := ParseFileName(name); !ok || n != want {
			t.Fatalf("%s: %d %v", name, n, ok)
		}
	}
	for _, bad := range []string{"MANIFEST-4", "MANIFEST-00000x", "manifest-000004", "MANIFEST-+00004", "MANIFEST-000004.tmp"} {
		if _, ok := ParseFileName(bad); ok {
			t.Fatalf("%s parsed", bad)
		}
	}
}

func TestGolden(t *testing.T) {
	for name, data := range map[string][]byte{
		"MANIFEST-000001": writeLog(t, 1, sampleRecords()),
		"CURRENT":         EncodeCurrent(1),
	} {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		golden, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if !bytes.Equal(golden, data) {
			t.Fatalf("output changed from %s: a format change needs a new version; run go test -update only if that is intended", path)
		}
	}
	golden, _ := os.ReadFile(filepath.Join("testdata", "MANIFEST-000001"))
	if !reflect.DeepEqual(replay(t, golden, 0).Records, sampleRecords()) {
		t.Fatal("golden manifest does not replay to the sample records")
	}
}
