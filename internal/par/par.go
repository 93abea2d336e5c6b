// Package par runs independent pieces of work on several cores.
package par

import (
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// PanicError is the error of a piece whose fn panicked: the panic is
// recovered on the worker goroutine (where it would end the program)
// and returned as the piece's error. Callers wrap it in the error their
// own callers expect.
type PanicError struct {
	Index int    // the piece
	Value any    // what fn panicked with
	Stack []byte // the worker's stack at the panic
}

// Error names the piece and the panic value.
func (e *PanicError) Error() string {
	return fmt.Sprintf("piece %d panicked: %v", e.Index, e.Value)
}

// Unwrap returns the panic value when it is an error (a runtime.Error,
// say), for errors.Is and errors.As.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// Each calls fn(i) for every i in [0, n) on up to workers goroutines,
// each taking the next i when done with the last, and returns the error
// of the lowest i that failed (every call is made, failed or not). A
// panic in fn(i) is recovered and is the error of i, a *PanicError.
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
				errs[i] = call(fn, i)
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

// call calls fn(i), turning a panic into a *PanicError.
func call(fn func(i int) error, i int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Index: i, Value: r, Stack: debug.Stack()}
		}
	}()
	return fn(i)
}
