package par

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
)

func TestEachCallsEveryIndexOnce(t *testing.T) {
	for _, n := range []int{0, 1, 7, 1000} {
		for _, workers := range []int{1, 3, 64} {
			calls := make([]atomic.Int32, n)
			if err := Each(n, workers, func(i int) error { calls[i].Add(1); return nil }); err != nil {
				t.Fatal(err)
			}
			for i := range calls {
				if c := calls[i].Load(); c != 1 {
					t.Fatalf("n=%d workers=%d: index %d called %d times", n, workers, i, c)
				}
			}
		}
	}
}

func TestEachReturnsTheLowestFailure(t *testing.T) {
	var calls atomic.Int32
	err := Each(100, 4, func(i int) error {
		calls.Add(1)
		if i == 17 || i == 80 {
			return fmt.Errorf("piece %d: %w", i, errors.ErrUnsupported)
		}
		return nil
	})
	if err == nil || err.Error() != "piece 17: unsupported operation" {
		t.Fatalf("Each = %v, want piece 17's error", err)
	}
	if calls.Load() != 100 {
		t.Fatalf("%d calls, want every one of 100", calls.Load())
	}
}
