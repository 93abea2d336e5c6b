package replica

import (
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/golden"
	"github.com/instadump/instadump/manifest"
)

var (
	testLineage = Lineage{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10}
	testParent  = Lineage{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	testTime    = time.Date(2026, 11, 25, 8, 32, 49, 123456789, time.UTC)
)

func valueState(name string, seg uint64, since uint64) manifest.State {
	return manifest.State{Name: name, Kind: manifest.ValueState, Since: since,
		Value: manifest.Loc{Segment: seg, Name: name, Offset: 32, StoredLen: 15, RawLen: 3, StoredSum: 0x1111, RawSum: 0x2222}}
}

// testCommits returns a full commit object and a delta on it.
func testCommits() (full, delta *Commit) {
	full = &Commit{
		Lineage: testLineage, Snapshot: 7, Base: 7, Prev: 5, PrevSum: 0xdeadbeef,
		Segments: []SegmentRef{{ID: 3, Size: 120, Tag: 0x0102030405060708}, {ID: 7, Size: 99, Tag: 0xa1a2a3a4a5a6a7a8}},
		Record: manifest.Record{Kind: manifest.Full, Snapshot: 7, Time: testTime, NextSegment: 8, Written: 99,
			States: []manifest.State{valueState("counter", 7, 7), valueState("greeting", 3, 2)}},
	}
	delta = &Commit{
		Lineage: testLineage, Snapshot: 9, Base: 7, Prev: 7, PrevSum: 0x55aa,
		Segments: []SegmentRef{{ID: 3, Size: 120, Tag: 0x0102030405060708}, {ID: 9, Size: 88, Tag: 0xb1}},
		Record: manifest.Record{Kind: manifest.Delta, Snapshot: 9, Time: testTime.Add(time.Second), NextSegment: 10, Written: 88,
			States: []manifest.State{valueState("counter", 9, 9)}, Removed: []string{"old"}},
	}
	return full, delta
}

// encoded returns c encoded, failing t if it does not encode.
func encoded(t testing.TB, c *Commit) []byte {
	t.Helper()
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCommitRoundTrip(t *testing.T) {
	full, delta := testCommits()
	for _, c := range []*Commit{full, delta} {
		b := encoded(t, c)
		got, sum, err := DecodeCommit(b, "test")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, c)
		}
		if sum != le.Uint64(b[len(b)-8:]) {
			t.Fatalf("checksum %x is not the object's last 8 bytes", sum)
		}
	}
}

// The encoding is frozen: a change to it must come with a new version.
func TestCommitGolden(t *testing.T) {
	full, _ := testCommits()
	b := encoded(t, full)
	o := Owner{Seq: 2, Lineage: testLineage, Parent: testParent, Fork: 17, Time: testTime}
	golden.Check(t, "commit-v1.golden", []byte(hex.Dump(b)))
	golden.Check(t, "owner-v1.golden", []byte(hex.Dump(o.Encode())))
}

func TestCommitEncodeRefuses(t *testing.T) {
	for name, edit := range map[string]func(c *Commit){
		"zero lineage":         func(c *Commit) { c.Lineage = Lineage{} },
		"record of another ID": func(c *Commit) { c.Record.Snapshot = 8 },
		"previous not before":  func(c *Commit) { c.Prev = 7 },
		"sum of no previous":   func(c *Commit) { c.Prev = 0 },
		"full with a base":     func(c *Commit) { c.Base = 3 },
		"unsorted segments":    func(c *Commit) { c.Segments[0], c.Segments[1] = c.Segments[1], c.Segments[0] },
		"segment not listed":   func(c *Commit) { c.Segments = c.Segments[:1] },
		"bad record":           func(c *Commit) { c.Record.States[0].Name = "" },
	} {
		full, _ := testCommits()
		edit(full)
		if _, err := full.Encode(); err == nil {
			t.Errorf("%s: Encode succeeded", name)
		}
	}
	_, delta := testCommits()
	delta.Prev, delta.PrevSum = 0, 0
	if _, err := delta.Encode(); err == nil {
		t.Error("a delta with no previous object: Encode succeeded")
	}
}

// Every prefix and every flipped byte is an error wrapping ErrCorrupt (or,
// for the version field, ErrUnsupportedVersion), never a panic or a wrong
// object.
func TestCommitCorruption(t *testing.T) {
	full, delta := testCommits()
	for _, c := range []*Commit{full, delta} {
		b := encoded(t, c)
		for n := 0; n < len(b); n++ {
			if _, _, err := DecodeCommit(b[:n], "k"); !errors.Is(err, errs.ErrCorrupt) {
				t.Fatalf("cut to %d bytes: %v", n, err)
			}
		}
		for i := range b {
			for _, bit := range []byte{0x01, 0x80} {
				d := append([]byte(nil), b...)
				d[i] ^= bit
				_, _, err := DecodeCommit(d, "k")
				if !errors.Is(err, errs.ErrCorrupt) && !errors.Is(err, errs.ErrUnsupportedVersion) {
					t.Fatalf("byte %d flipped: %v", i, err)
				}
				if err != nil && !strings.Contains(err.Error(), `"k"`) {
					t.Fatalf("byte %d flipped: the error does not name the object: %v", i, err)
				}
			}
		}
	}
}

func TestOwnerRoundTrip(t *testing.T) {
	for _, o := range []Owner{
		{Seq: 1, Lineage: testLineage, Time: testTime},
		{Seq: 2, Lineage: testLineage, Parent: testParent, Fork: 17, Time: testTime},
	} {
		b := o.Encode()
		got, err := DecodeOwner(b, "k")
		if err != nil || got != o {
			t.Fatalf("round trip: %+v, %v; want %+v", got, err, o)
		}
		for n := 0; n < len(b); n++ {
			if _, err := DecodeOwner(b[:n], "k"); !errors.Is(err, errs.ErrCorrupt) {
				t.Fatalf("cut to %d bytes: %v", n, err)
			}
		}
		for i := range b {
			d := append([]byte(nil), b...)
			d[i] ^= 0x10
			if _, err := DecodeOwner(d, "k"); !errors.Is(err, errs.ErrCorrupt) && !errors.Is(err, errs.ErrUnsupportedVersion) {
				t.Fatalf("byte %d flipped: %v", i, err)
			}
		}
	}
	for name, o := range map[string]Owner{
		"own parent":         {Seq: 1, Lineage: testLineage, Parent: testLineage, Fork: 3},
		"parent, no fork":    {Seq: 1, Lineage: testLineage, Parent: testParent},
		"fork, no parent":    {Seq: 1, Lineage: testLineage, Fork: 3},
		"zero lineage":       {Seq: 1},
		"sequence number 0":  {Lineage: testLineage},
		"newer format (too)": {Seq: 1, Lineage: testLineage},
	} {
		b := o.Encode()
		if name == "newer format (too)" {
			b = append([]byte(nil), b...)
			b[8] = 2
			copy(b[24:32], le.AppendUint64(nil, xxhashSum(b[:24])))
			if _, err := DecodeOwner(b, "k"); !errors.Is(err, errs.ErrUnsupportedVersion) {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if _, err := DecodeOwner(b, "k"); !errors.Is(err, errs.ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestKeys(t *testing.T) {
	ref := SegmentRef{ID: 17, Tag: 0x0123456789abcdef}
	for _, tc := range []struct {
		key  string
		kind string
		num  uint64
	}{
		{OwnerKey(3), "owner", 3},
		{CommitKey(testLineage, 42), "snap", 42},
		{SegmentKey(testLineage, ref), "seg", 17},
		{SegmentKey(testLineage, SegmentRef{ID: 12345678, Tag: 1}), "seg", 12345678},
	} {
		if err := CheckKey(tc.key); err != nil {
			t.Fatal(err)
		}
		kind, l, num, r, ok := ParseKey(tc.key)
		if !ok || kind != tc.kind || num != tc.num || (kind != "owner" && l != testLineage) {
			t.Fatalf("ParseKey(%q) = %s %s %d %v", tc.key, kind, l, num, ok)
		}
		if kind == "seg" && num == 17 && r != ref {
			t.Fatalf("ParseKey(%q): segment %+v", tc.key, r)
		}
	}
	if got := SegmentKey(testLineage, ref); got != "0123456789abcdeffedcba9876543210/seg/000017-0123456789abcdef.seg" {
		t.Fatalf("SegmentKey = %q", got)
	}
	if got := CommitKey(testLineage, 42); got != "0123456789abcdeffedcba9876543210/snap/00000000000000000042" {
		t.Fatalf("CommitKey = %q", got)
	}
	for _, key := range []string{
		"owner/42", "owner/0000000000000000004x", "x/snap/00000000000000000001",
		"0123456789abcdeffedcba9876543210/snap/00000000000000000000",
		"0123456789ABCDEFFEDCBA9876543210/snap/00000000000000000001",
		"0123456789abcdeffedcba9876543210/seg/17-0123456789abcdef.seg",
		"0123456789abcdeffedcba9876543210/seg/000017-0123456789ABCDEF.seg",
		"0123456789abcdeffedcba9876543210/seg/000017-0123456789abcdef",
		"0123456789abcdeffedcba9876543210/seg/0000017-0123456789abcdef.seg",
		"0123456789abcdeffedcba9876543210/other",
	} {
		if kind, _, _, _, ok := ParseKey(key); ok {
			t.Errorf("ParseKey(%q) = %s, want not a layout key", key, kind)
		}
	}
	l, err := NewLineage()
	if err != nil || l.IsZero() {
		t.Fatal(l, err)
	}
	if p, err := ParseLineage(l.String()); err != nil || p != l {
		t.Fatalf("ParseLineage(%s) = %s, %v", l, p, err)
	}
}
