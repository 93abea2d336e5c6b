package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/fileheader"
	"github.com/instadump/instadump/internal/golden"
)

type memFile struct{ bytes.Buffer }

func (*memFile) Sync() error { return nil }

func loc(name string, seg uint64, off int64) Loc {
	return Loc{Segment: seg, Name: name, Offset: off, StoredLen: 20, RawLen: 30, StoredSum: 0x1122334455667788 ^ uint64(off), RawSum: seg << 32}
}

func ref(name string, seg uint64, off int64, since uint64) State {
	return State{Name: name, Kind: ValueState, Value: loc(name, seg, off), Since: since}
}

func mapRef(name string, since uint64, entries int64, parts, deltas int) State {
	s := State{Name: name, Kind: MapState, Since: since, Entries: entries, Schema: 3}
	for i := range parts {
		s.Base = append(s.Base, loc(fmt.Sprintf("%s\x00b%d", name, i), 1, int64(100+20*i)))
	}
	for i := range deltas {
		s.Deltas = append(s.Deltas, loc(fmt.Sprintf("%s\x00d%d", name, i), uint64(2+i), 32))
	}
	return s
}

var t0 = time.Date(2026, 11, 25, 8, 0, 0, 123456789, time.UTC)

// sampleRecords: three snapshots, the later two as deltas, with a map.
func sampleRecords() []Record {
	return []Record{
		{Kind: Full, Snapshot: 1, Time: t0, NextSegment: 2, Written: 4000, States: []State{ref("a", 1, 32, 1), ref("b", 1, 52, 1), ref("c", 1, 72, 1), mapRef("m", 1, 7, 2, 0)}},
		{Kind: Delta, Snapshot: 2, Time: t0.Add(time.Second), NextSegment: 3, States: []State{ref("a", 2, 32, 2), mapRef("m", 2, 8, 2, 1)}, Removed: []string{"c"}},
		{Kind: Delta, Snapshot: 3, Time: t0.Add(2 * time.Second), NextSegment: 4, Written: 123, Retained: 1, States: []State{ref("d", 3, 32, 3), ref("b", 3, 52, 3)}},
	}
}

const file = "MANIFEST-000001"

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

func replay(t testing.TB, data []byte) *Log {
	t.Helper()
	log, err := ReplayBytes(data, file)
	if err != nil {
		t.Fatal(err)
	}
	return log
}

func TestRoundTrip(t *testing.T) {
	recs := sampleRecords()
	data := writeLog(t, 1, recs)
	log := replay(t, data)
	if log.FileNum != 1 || log.Version != Version || log.Tail != TailClean || log.TailErr != nil {
		t.Fatalf("replay: num %d version %d tail %v", log.FileNum, log.Version, log.Tail)
	}
	if !reflect.DeepEqual(log.Records, recs) {
		t.Fatalf("records differ:\n%+v\n%+v", log.Records, recs)
	}
	if log.Offsets[0] != HeaderSize || len(log.Offsets) != 3 {
		t.Fatalf("offsets %v", log.Offsets)
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
		func(r *Record) { r.States[0].Value.Segment = 0 },
		func(r *Record) { r.States[0].Value.Name = "other" },
		func(r *Record) { r.States[0].Since = 5 },
		func(r *Record) { r.States[0].Value.Offset = -1 },
		func(r *Record) { r.States[0].Kind = 0 },
		func(r *Record) { r.States[0].Entries = 3 },
		func(r *Record) { r.States[3].Base = nil },
		func(r *Record) { r.States[3].Value = loc("m", 1, 32) },
		func(r *Record) { r.States[3].Base[1].Name = "" },
		func(r *Record) { r.States[3].Entries = -1 },
		func(r *Record) {
			r.States[0].Name = strings.Repeat("x", MaxNameLen+1)
			r.States[0].Value.Name = r.States[0].Name
		},
		func(r *Record) { r.Time = time.Time{} },
		func(r *Record) { r.Retained = 2 },
		// Names in order, as the engine writes them, and not.
		func(r *Record) { r.Kind, r.Removed = Delta, []string{"b"} },
		func(r *Record) { r.Kind, r.Removed = Delta, []string{"z", "z"} },
		func(r *Record) { r.Kind, r.Removed = Delta, []string{"z", "a"} },
		func(r *Record) { r.States[1] = ref("a", 1, 52, 1) },
	} {
		r := good
		r.States = append([]State(nil), good.States...)
		r.States[3].Base = append([]Loc(nil), good.States[3].Base...)
		mod(&r)
		w, _ := Create(&memFile{}, 1)
		if _, err := w.Append(r); err == nil {
			t.Fatalf("case %d: bad record accepted", i)
		}
	}
}

// The Writer reuses its buffer for records of small size, and keeps none
// after a large record: a first save of many states writes one, and
// the records after it are small.
func TestWriterKeepsNoLargeBuffer(t *testing.T) {
	w, _ := Create(&memFile{}, 1)
	small := sampleRecords()[0]
	if _, err := w.Append(small); err != nil {
		t.Fatal(err)
	}
	if cap(w.buf) == 0 {
		t.Fatal("no buffer kept after a small record")
	}
	big := Record{Kind: Full, Snapshot: 1, Time: small.Time}
	for i := range 50_000 {
		big.States = append(big.States, ref(fmt.Sprintf("state-%06d", i), 1, int64(i)*64, 1))
	}
	if _, err := w.Append(big); err != nil {
		t.Fatal(err)
	}
	if cap(w.buf) > maxKeptBuffer {
		t.Fatalf("a buffer of %d bytes kept after a large record, want at most %d", cap(w.buf), maxKeptBuffer)
	}
}

// requireCorrupt requires err to be corruption naming the manifest.
func requireCorrupt(t *testing.T, err error, what string) {
	t.Helper()
	var ce *errs.CorruptError
	if !errors.Is(err, errs.ErrCorrupt) || !errors.As(err, &ce) || ce.File != file || !strings.Contains(err.Error(), file) {
		t.Fatalf("%s: %v, want ErrCorrupt naming %s", what, err, file)
	}
}

// A manifest cut at every byte of its last record, or with that record
// zeroed, replays to the records before it and reports a torn tail.
func TestTornTail(t *testing.T) {
	recs := sampleRecords()
	data := writeLog(t, 1, recs)
	lastOff := replay(t, data).Offsets[2]
	for cut := lastOff; cut < int64(len(data)); cut++ {
		for _, tail := range [][]byte{nil, make([]byte, int64(len(data))-cut)} {
			torn := append(bytes.Clone(data[:cut]), tail...)
			log, err := ReplayBytes(torn, file)
			if err != nil {
				t.Fatalf("cut at %d (+%d zeros): %v", cut, len(tail), err)
			}
			wantTail := cut != lastOff || len(tail) > 0
			if len(log.Records) != 2 || (log.Tail != TailClean) != wantTail {
				t.Fatalf("cut at %d (+%d zeros): %d records, tail %v", cut, len(tail), len(log.Records), log.Tail)
			}
			var ce *errs.CorruptError
			if wantTail && (!errors.As(log.TailErr, &ce) || ce.Offset != lastOff || ce.Hint != errs.HintTornTail) {
				t.Fatalf("TailErr %v", log.TailErr)
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
	lastOff := int(replay(t, data).Offsets[2])
	for i := range data {
		for _, mask := range []byte{0x01, 0x40, 0xFF} {
			bad := bytes.Clone(data)
			bad[i] ^= mask
			log, err := ReplayBytes(bad, file)
			if err != nil {
				requireCorrupt(t, err, fmt.Sprintf("byte %d ^%#x", i, mask))
				continue
			}
			if i < lastOff {
				t.Fatalf("byte %d ^%#x before the last record: no error", i, mask)
			}
			if log.Tail == TailClean || !reflect.DeepEqual(log.Records, recs[:2]) {
				t.Fatalf("byte %d ^%#x: tail %v, %d records", i, mask, log.Tail, len(log.Records))
			}
		}
	}
}

func TestMiddleRecordDamageIsCorruption(t *testing.T) {
	data := writeLog(t, 1, sampleRecords())
	offs := replay(t, data).Offsets
	for _, damage := range []func([]byte){
		func(b []byte) { b[offs[1]+20] ^= 1 },                                      // payload
		func(b []byte) { b[offs[1]+5] ^= 0x10 },                                    // length
		func(b []byte) { copy(b[offs[1]:offs[2]], make([]byte, offs[2]-offs[1])) }, // zeroed
	} {
		bad := bytes.Clone(data)
		damage(bad)
		_, err := ReplayBytes(bad, file)
		requireCorrupt(t, err, "middle record")
		var ce *errs.CorruptError
		errors.As(err, &ce)
		if ce.Offset != offs[1] {
			t.Fatalf("error at offset %d, want %d: %v", ce.Offset, offs[1], err)
		}
	}
}

func TestTruncatedAtEveryPrefix(t *testing.T) {
	data := writeLog(t, 1, sampleRecords())
	offs := replay(t, data).Offsets
	for n := 0; n < len(data); n++ {
		log, err := ReplayBytes(data[:n], file)
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
		if len(log.Records) != want {
			t.Fatalf("prefix %d: %d records, want %d", n, len(log.Records), want)
		}
	}
}

// reframe appends raw fields to a valid record's payload.
func reframe(t *testing.T, rec Record, extra []byte) []byte {
	p, err := rec.AppendPayload(nil)
	if err != nil {
		t.Fatal(err)
	}
	return appendFrame(fileheader.Append(nil, Magic, Version, 1), append(p, extra...))
}

func TestUnknownFields(t *testing.T) {
	rec := sampleRecords()[0]
	// A skippable field is ignored.
	log := replay(t, reframe(t, rec, appendField(nil, 100, []byte("future"))))
	if !reflect.DeepEqual(log.Records[0], rec) {
		t.Fatal("skippable field changed the record")
	}
	// A required one is refused as a newer version, not as corruption.
	_, err := ReplayBytes(reframe(t, rec, appendField(nil, 9, []byte{1})), file)
	if !errors.Is(err, errs.ErrUnsupportedVersion) || errors.Is(err, errs.ErrCorrupt) {
		t.Fatalf("unknown required field: %v", err)
	}
	// So is one inside a state, or a location, or an unknown state kind.
	st := appendState(nil, &State{Name: "z", Kind: ValueState, Value: loc("z", 1, 1), Since: 1})
	if log := replay(t, reframe(t, rec, appendField(nil, tagState, appendField(bytes.Clone(st), 70, nil)))); len(log.Records[0].States) != 5 {
		t.Fatal("state with a skippable field lost")
	}
	withUnknownLoc := appendField(nil, stName, []byte("y"))
	withUnknownLoc = appendUvarintField(withUnknownLoc, stSince, 1)
	withUnknownLoc = appendUvarintField(withUnknownLoc, stKind, uint64(MapState))
	withUnknownLoc = appendField(withUnknownLoc, stBase, appendField(appendLoc(nil, &Loc{Segment: 1, Name: "y0"}, true), 40, nil))
	withUnknownLoc = appendUvarintField(withUnknownLoc, stEntries, 0)
	for name, state := range map[string][]byte{
		"state":    appendField(bytes.Clone(st), 30, nil),
		"kind":     appendUvarintField(bytes.Clone(st), stKind, 3),
		"location": withUnknownLoc,
	} {
		if _, err := ReplayBytes(reframe(t, rec, appendField(nil, tagState, state)), file); !errors.Is(err, errs.ErrUnsupportedVersion) {
			t.Fatalf("unknown required %s field: %v", name, err)
		}
	}
	// A repeated single field is corruption.
	_, err = ReplayBytes(reframe(t, rec, appendUvarintField(nil, tagSnapshot, 7)), file)
	requireCorrupt(t, err, "repeated field")
	// A map state with a value location is corruption.
	m := appendState(nil, &State{Name: "y", Kind: MapState, Base: []Loc{loc("y0", 1, 1)}, Since: 1})
	_, err = ReplayBytes(reframe(t, rec, appendField(nil, tagState, appendUvarintField(m, stOffset, 5))), file)
	requireCorrupt(t, err, "map with a value location")
}

func TestOrderChecks(t *testing.T) {
	recs := sampleRecords()
	for name, bad := range map[string][]Record{
		"delta first":   {recs[1]},
		"ID goes back":  {recs[0], recs[2], recs[1]},
		"same ID twice": {recs[0], recs[0]},
	} {
		_, err := ReplayBytes(writeLog(t, 1, bad), file)
		requireCorrupt(t, err, name)
	}
}

func TestHeaderErrors(t *testing.T) {
	data := writeLog(t, 1, sampleRecords())
	bad := bytes.Clone(data)
	bad[1] = 'X'
	if _, err := ReplayBytes(bad, file); !errors.Is(err, errs.ErrBadMagic) {
		t.Fatalf("bad magic: %v", err)
	}
	for v, want := range map[uint16]error{Version + 1: errs.ErrUnsupportedVersion, 0: errs.ErrCorrupt} {
		bad = bytes.Clone(data)
		copy(bad, fileheader.Append(nil, Magic, v, 1))
		if _, err := ReplayBytes(bad, file); !errors.Is(err, want) {
			t.Fatalf("version %d: %v", v, err)
		}
	}
	// Replay through a ReaderAt that is shorter than claimed.
	if _, err := Replay(bytes.NewReader(data[:40]), int64(len(data)), file); !errors.Is(err, errs.ErrCorrupt) {
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
		if _, err := DecodeCurrent(data[:n], "CURRENT"); !errors.Is(err, errs.ErrCorrupt) || !strings.Contains(err.Error(), "CURRENT") {
			t.Fatalf("prefix %d: %v", n, err)
		}
	}
	for i := range data {
		bad := bytes.Clone(data)
		bad[i] ^= 0x04
		if _, err := DecodeCurrent(bad, "CURRENT"); !errors.Is(err, errs.ErrCorrupt) {
			t.Fatalf("flip %d: %v", i, err)
		}
	}
	// A flipped letter case in the checksum parses to the same number:
	// still damage (found by the bit-flip tests).
	upper := strings.ToUpper(string(data[len(data)-17:]))
	if _, err := DecodeCurrent(append(bytes.Clone(data[:len(data)-17]), upper...), "CURRENT"); !errors.Is(err, errs.ErrCorrupt) {
		t.Fatalf("upper-case checksum: %v", err)
	}
	v2 := strings.Replace(string(data), "CURRENT 1", "CURRENT 2", 1)
	body := v2[:strings.LastIndex(v2, "xxh64")]
	v2 = body + fmt.Sprintf("xxh64 %016x\n", xxhashSumString(body))
	if _, err := DecodeCurrent([]byte(v2), "CURRENT"); !errors.Is(err, errs.ErrUnsupportedVersion) {
		t.Fatalf("CURRENT version 2: %v", err)
	}
}

func TestGolden(t *testing.T) {
	golden.Check(t, file, writeLog(t, 1, sampleRecords()))
	golden.Check(t, "CURRENT", EncodeCurrent(1))
}

// A version 1 manifest, as instadump wrote them before maps, still
// replays: its states are values.
func TestVersion1StillReads(t *testing.T) {
	data, err := os.ReadFile("testdata/MANIFEST-v1")
	if err != nil {
		t.Fatal(err)
	}
	log := replay(t, data)
	if log.Version != 1 || len(log.Records) != 3 {
		t.Fatalf("version %d, %d records", log.Version, len(log.Records))
	}
	want := []State{ref("a", 1, 32, 1), ref("b", 1, 52, 1), ref("c", 1, 72, 1)}
	if !reflect.DeepEqual(log.Records[0].States, want) || !reflect.DeepEqual(log.Records[1].Removed, []string{"c"}) {
		t.Fatalf("version 1 records: %+v", log.Records)
	}
}

// A complete last record whose checksum fails is damage, not a torn
// tail: Replay returns the records before it and reports TailDamaged,
// naming the file and the record's offset. The same record with a zeroed
// sector or a zeroed end (what a crash leaves) is a torn tail.
func TestDamagedLastRecord(t *testing.T) {
	recs := sampleRecords()
	recs[2].States = append(recs[2].States, ref(strings.Repeat("x", 1000), 3, 64, 3), ref(strings.Repeat("y", 1000), 3, 96, 3)) // spans sectors
	data := writeLog(t, 1, recs)
	lastOff := replay(t, data).Offsets[2]
	for _, tc := range []struct {
		what   string
		damage func([]byte)
		want   Tail
	}{
		{"flipped bit", func(b []byte) { b[lastOff+FrameHeaderSize+3] ^= 0x04 }, TailDamaged},
		{"flipped checksum", func(b []byte) { b[lastOff+9] ^= 0x80 }, TailDamaged},
		{"zeroed sector", func(b []byte) {
			at := (lastOff + FrameHeaderSize + sectorSize) / sectorSize * sectorSize
			copy(b[at:], make([]byte, sectorSize))
		}, TailZeroed},
		{"zeroed end", func(b []byte) { copy(b[len(b)-5:], make([]byte, 5)) }, TailZeroed},
	} {
		bad := bytes.Clone(data)
		tc.damage(bad)
		log, err := ReplayBytes(bad, file)
		if err != nil {
			t.Fatalf("%s: %v", tc.what, err)
		}
		if log.Tail != tc.want || len(log.Records) != 2 {
			t.Fatalf("%s: tail %v, %d records", tc.what, log.Tail, len(log.Records))
		}
		var ce *errs.CorruptError
		if !errors.As(log.TailErr, &ce) || ce.File != file || ce.Offset != lastOff {
			t.Fatalf("%s: TailErr %v", tc.what, log.TailErr)
		}
		if damaged := tc.want == TailDamaged; damaged != (ce.Hint == errs.HintDamagedTail) || damaged != errors.Is(log.TailErr, errs.ErrChecksum) {
			t.Fatalf("%s: TailErr %v", tc.what, log.TailErr)
		}
	}
}

// What the package doc says of damage to the first 8 bytes of a last
// record written whole, bit by bit: a flipped bit in its magic or length
// reads as a torn tail (or, for a shorter length, as TailDamaged or
// TailZeroed), one in its checksum field as TailDamaged; Replay never
// fails on it and never returns the record.
func TestLastFrameHeaderBitFlips(t *testing.T) {
	data := writeLog(t, 1, sampleRecords())
	lastOff := int(replay(t, data).Offsets[2])
	rest := len(data) - lastOff - FrameHeaderSize
	for bit := range 8 * FrameHeaderSize {
		bad := bytes.Clone(data)
		bad[lastOff+bit/8] ^= 1 << (bit % 8)
		log, err := ReplayBytes(bad, file)
		if err != nil || len(log.Records) != 2 {
			t.Fatalf("bit %d: %v", bit, err)
		}
		l := int(le.Uint32(bad[lastOff+4:]))
		var want Tail
		switch {
		case bit < 32:
			want = TailGarbage
		case bit >= 64:
			want = TailDamaged
		case l == 0 || l > MaxRecordSize:
			want = TailGarbage
		case l > rest:
			want = TailTruncated
		case bad[lastOff+FrameHeaderSize+l-1] == 0:
			want = TailZeroed
		default:
			want = TailDamaged
		}
		if log.Tail != want {
			t.Errorf("bit %d (length %d of %d): tail %v, want %v", bit, l, rest, log.Tail, want)
		}
	}
}

func TestEnumNames(t *testing.T) {
	for _, c := range []struct {
		v    fmt.Stringer
		want string
	}{
		{Full, "full"}, {Delta, "delta"}, {Kind(0), "Kind(0)"}, {Kind(3), "Kind(3)"},
		{ValueState, "value"}, {MapState, "map"}, {StateKind(0), "StateKind(0)"}, {StateKind(255), "StateKind(255)"},
		{TailClean, "clean"}, {TailDamaged, "damaged record"}, {Tail(-1), "Tail(-1)"}, {Tail(5), "Tail(5)"},
	} {
		if got := c.v.String(); got != c.want {
			t.Errorf("%#v: %q, want %q", c.v, got, c.want)
		}
	}
}

func appendFrame(b, payload []byte) []byte {
	var h [FrameHeaderSize]byte
	putFrameHeader(h[:], payload)
	b = append(b, h[:]...)
	return append(b, payload...)
}
