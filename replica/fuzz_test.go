package replica

import (
	"errors"
	"reflect"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/instadump/instadump/internal/errs"
)

func xxhashSum(b []byte) uint64 { return xxhash.Sum64(b) }

// fixSums recomputes the checksums of what looks like a commit object or
// owner record, so that the fuzzer reaches the decoding past them.
func fixSums(d []byte) []byte {
	d = append([]byte(nil), d...)
	if len(d) >= 32 {
		le.PutUint64(d[24:], xxhash.Sum64(d[:24]))
	}
	if len(d) >= 40 {
		le.PutUint64(d[len(d)-8:], xxhash.Sum64(d[:len(d)-8]))
	}
	return d
}

// FuzzCommit decodes arbitrary bytes as a commit object and as an owner
// record (with their checksums fixed up or not): never a panic, errors of
// the right classes, and what decodes round-trips.
//
//	go test -fuzz=FuzzCommit ./replica
func FuzzCommit(f *testing.F) {
	full, delta := testCommits()
	f.Add(encoded(f, full), false)
	f.Add(encoded(f, delta), false)
	f.Add((&Owner{Seq: 2, Lineage: testLineage, Parent: testParent, Fork: 17, Time: testTime}).Encode(), false)
	f.Add([]byte(CommitMagic), true)
	f.Fuzz(func(t *testing.T, data []byte, fix bool) {
		if fix {
			data = fixSums(data)
		}
		c, _, err := DecodeCommit(data, "fuzz")
		if err != nil {
			if !errors.Is(err, errs.ErrCorrupt) && !errors.Is(err, errs.ErrUnsupportedVersion) {
				t.Fatalf("DecodeCommit: an error of no class: %v", err)
			}
		} else {
			b, err := c.Encode()
			if err != nil {
				t.Fatalf("a decoded commit object does not encode: %v", err)
			}
			c2, _, err := DecodeCommit(b, "fuzz")
			if err != nil {
				t.Fatalf("re-encoded commit object does not decode: %v", err)
			}
			if !reflect.DeepEqual(c, c2) {
				t.Fatalf("round trip:\n%+v\n%+v", c, c2)
			}
		}
		o, err := DecodeOwner(data, "fuzz")
		if err != nil {
			if !errors.Is(err, errs.ErrCorrupt) && !errors.Is(err, errs.ErrUnsupportedVersion) {
				t.Fatalf("DecodeOwner: an error of no class: %v", err)
			}
			return
		}
		if o2, err := DecodeOwner(o.Encode(), "fuzz"); err != nil || o2 != o {
			t.Fatalf("owner round trip: %+v, %v; want %+v", o2, err, o)
		}
	})
}
