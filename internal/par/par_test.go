package par

import (
	"errors"
	"fmt"
	"strings"
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

// A panic in fn, on a worker goroutine, comes back as the error of its
// piece, holding the panic value; the other pieces are all run.
func TestEachRecoversPanics(t *testing.T) {
	var calls atomic.Int32
	cause := errors.New("the cause")
	err := Each(50, 4, func(i int) error {
		calls.Add(1)
		switch i {
		case 9:
			m := map[any]int{}
			m[any([]int{1})]++ // hash of unhashable type
		case 30:
			panic(cause)
		}
		return nil
	})
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Index != 9 || !strings.Contains(err.Error(), "unhashable") || !strings.Contains(err.Error(), "piece 9") {
		t.Fatalf("Each = %v, want piece 9's panic", err)
	}
	if calls.Load() != 50 {
		t.Fatalf("%d calls, want every one of 50", calls.Load())
	}
	err = Each(50, 4, func(i int) error {
		if i == 30 {
			panic(cause)
		}
		return nil
	})
	if !errors.Is(err, cause) || !errors.As(err, &pe) || pe.Value != cause {
		t.Fatalf("Each = %v, want one wrapping the panic's error", err)
	}
}
