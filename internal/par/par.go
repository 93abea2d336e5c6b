// Package par runs independent pieces of work on several cores.
package par

import (
	"sync"
	"sync/atomic"
)

// Each calls fn(i) for every i in [0, n) on up to workers goroutines,
// each taking the next i when done with the last, and returns the error
// of the lowest i that failed (every call is made, failed or not).
func Each(n, workers int, fn func(i int) error) error {
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				errs[i] = fn(i)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
