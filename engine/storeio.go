package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/replica"
)

// where names key of st in errors.
func where(st replica.Store, key string) string { return fmt.Sprintf("%s in %s", key, st) }

// inStore is " in " and st's description for a message wrapping err,
// or "" when err's text names st already (a store's own errors do, and
// so do those made with where): a message names the store once.
func inStore(st replica.Store, err error) string { return storeRef("in", st, err) }

// fromStore is inStore with "from".
func fromStore(st replica.Store, err error) string { return storeRef("from", st, err) }

func storeRef(prep string, st replica.Store, err error) string {
	name := st.String()
	if name == "" || err != nil && strings.Contains(err.Error(), name) {
		return ""
	}
	return " " + prep + " " + name
}

// Retries of reads: a failure that may pass (replica.ErrUnavailable) is
// tried once more after a backoff with jitter. A Store such as replica/s3
// retries each request already (and resumes reads); this covers stores
// that do not, without multiplying the waits of those that do.
const (
	readAttempts   = 2
	readBackoffMin = 250 * time.Millisecond
	readBackoffMax = 4 * time.Second
)

// withRetry runs fn until it succeeds, fails in a way that will not
// pass, has failed readAttempts times, or ctx is done.
func withRetry(ctx context.Context, fn func() error) error {
	var b backoff
	b.min, b.max = readBackoffMin, readBackoffMax
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || attempt == readAttempts || !errors.Is(err, replica.ErrUnavailable) || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(b.next())
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// backoff is exponential backoff with jitter: each wait is drawn from the
// upper half of a bound that doubles from min to max.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
}

func (b *backoff) next() time.Duration {
	b.cur = min(max(2*b.cur, b.min), b.max)
	return b.cur/2 + rand.N(b.cur/2+1)
}

func (b *backoff) reset() { b.cur = 0 }

func list(ctx context.Context, st replica.Store, prefix string) (objs []replica.Object, err error) {
	err = withRetry(ctx, func() error {
		objs, err = st.List(ctx, prefix)
		return err
	})
	return objs, err
}

// getAll reads object key of the given size (as listed), which must be
// at most limit bytes.
func getAll(ctx context.Context, st replica.Store, key string, size, limit int64) ([]byte, error) {
	if size < 0 || size > limit {
		return nil, errs.Corruptf(where(st, key), 0, "an object of %d bytes, more than %d", size, limit)
	}
	var b []byte
	err := withRetry(ctx, func() error {
		rc, err := st.Get(ctx, key)
		if err != nil {
			return err
		}
		defer rc.Close()
		b = make([]byte, size)
		if _, err := io.ReadFull(rc, b); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return errs.Corruptf(where(st, key), 0, "the object is shorter than the %d bytes listed", size)
			}
			return fmt.Errorf("instadump: reading %s: %w", where(st, key), err)
		}
		if n, _ := rc.Read(make([]byte, 1)); n > 0 {
			return errs.Corruptf(where(st, key), size, "the object is longer than the %d bytes listed", size)
		}
		return nil
	})
	return b, err
}

// download copies object key, of size bytes, into a file made by
// create, made anew (empty) each time a failure that may pass interrupts
// the copy, through buf. It returns the file, open.
func download(ctx context.Context, st replica.Store, key string, size int64, create func() (File, error), buf []byte) (File, error) {
	var f File
	err := withRetry(ctx, func() error {
		if f != nil {
			f.Close()
		}
		var err error
		if f, err = create(); err != nil {
			return err
		}
		rc, err := st.Get(ctx, key)
		if err != nil {
			return err
		}
		defer rc.Close()
		n, err := io.CopyBuffer(onlyWriter{f}, io.LimitReader(rc, size), buf)
		if err != nil {
			return fmt.Errorf("downloading %s: %w", where(st, key), err)
		}
		if n < size {
			return errs.Corruptf(where(st, key), n, "the object ends after %d of its %d bytes", n, size)
		}
		if m, _ := rc.Read(buf[:1]); m > 0 {
			return errs.Corruptf(where(st, key), size, "the object is longer than its %d bytes", size)
		}
		return nil
	})
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, err
	}
	return f, nil
}

// onlyWriter hides any ReadFrom of its Writer, so that io.CopyBuffer
// copies through the given buffer.
type onlyWriter struct{ io.Writer }
