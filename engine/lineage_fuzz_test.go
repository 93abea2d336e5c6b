package engine

import (
	"errors"
	"testing"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/replica"
)

// FuzzLineage: a LINEAGE file of any bytes decodes without panicking,
// to an error wrapping ErrCorrupt or ErrUnsupportedVersion, or to a
// lineage that encodes back to a file that decodes to it.
func FuzzLineage(f *testing.F) {
	for v := 1; v <= lineageVersion; v++ {
		for _, l := range []Lineage{
			{ID: replica.Lineage{1}},
			{ID: replica.Lineage{2}, Parent: replica.Lineage{3}, Fork: 7, Shipped: 9, ShippedSum: 1<<64 - 1, Prev: 8, PrevSum: 5},
			{ID: replica.Lineage{4}, Parent: replica.Lineage{5}, Fork: 1, Via: [maxVia]replica.Lineage{{6}, {7}, {8}}},
		} {
			f.Add(encodeLineageVersion(l, v))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := decodeLineage(data, "LINEAGE")
		if err != nil {
			if !errors.Is(err, errs.ErrCorrupt) && !errors.Is(err, errs.ErrUnsupportedVersion) {
				t.Fatalf("an error that is neither corruption nor an unsupported version: %v", err)
			}
			return
		}
		again, err := decodeLineage(encodeLineage(l), "LINEAGE")
		if err != nil {
			t.Fatalf("%+v encodes to a file that does not decode: %v", l, err)
		}
		l.ShippedKnown, l.SumsKnown = true, true // what a file of the current version says
		if again != l {
			t.Fatalf("%+v decodes back as %+v", l, again)
		}
	})
}
