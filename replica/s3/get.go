package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/instadump/instadump/replica"
)

// errReplaced: a resumed read found another object under the key.
var errReplaced = errors.New("the object was replaced while it was read (its ETag changed): read it again")

// Get implements replica.Store.
func (s *store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	name, err := s.name(key)
	if err != nil {
		return nil, s.fail("get", key, attempts{}, err)
	}
	r := &objectReader{s: s, ctx: ctx, key: key, name: name}
	if a, err := r.open(); err != nil {
		return nil, s.fail("get", key, a, err)
	}
	return r, nil
}

// objectReader reads an object. When its connection fails mid-object it
// asks again for the rest, with a ranged GET that the server answers only
// if the object's ETag is still the one it began with.
type objectReader struct {
	s         *store
	ctx       context.Context
	key, name string
	body      io.ReadCloser
	etag      string
	size      int64
	off       int64 // bytes delivered
	failures  int   // failed resumes since bytes last came
	err       error // sticky
}

// open makes the first request, or one resuming at r.off.
func (r *objectReader) open() (attempts, error) {
	var opts minio.GetObjectOptions
	if r.off > 0 {
		if err := opts.SetRange(r.off, 0); err != nil {
			return attempts{}, err
		}
		if r.etag != "" {
			if err := opts.SetMatchETag(r.etag); err != nil {
				return attempts{}, err
			}
		}
	}
	return r.s.retry(r.ctx, func() error {
		body, info, _, err := r.s.core.GetObject(r.ctx, r.s.bucket, r.name, opts)
		if err != nil {
			return err
		}
		if r.off == 0 {
			r.etag, r.size = info.ETag, info.Size
		}
		r.body = body
		return nil
	})
}

func (r *objectReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	for {
		n, err := r.body.Read(p)
		r.off += int64(n)
		if n > 0 {
			r.failures = 0
		}
		switch {
		case err == nil:
			return n, nil
		case err == io.EOF && (r.off == r.size || r.size < 0):
			return n, io.EOF // (a size < 0: the server did not say)
		case err == io.EOF:
			err = fmt.Errorf("the connection ended at byte %d of %d: %w", r.off, r.size, io.ErrUnexpectedEOF)
		}
		if cerr := r.resume(err); cerr != nil {
			r.err = cerr
			return n, cerr
		}
		if n > 0 {
			return n, nil
		}
	}
}

// resume replaces a body that failed with err by one from r.off on, or
// returns the error that ends the reading.
func (r *objectReader) resume(err error) error {
	r.body.Close()
	if cerr := r.ctx.Err(); cerr != nil {
		return r.s.failAt("get", r.key, fmt.Sprintf("reading at byte %d", r.off), attempts{n: 1}, cerr)
	}
	v := r.s.judge(err)
	r.failures++
	if !v.retry || r.failures >= r.s.maxAttempts {
		return r.s.failAt("get", r.key, fmt.Sprintf("reading at byte %d", r.off), attempts{n: r.failures}, err)
	}
	wait := min(r.s.minBackoff<<(r.failures-1), r.s.maxBackoff)
	t := time.NewTimer(wait)
	select {
	case <-t.C:
	case <-r.ctx.Done():
		t.Stop()
		return r.s.failAt("get", r.key, fmt.Sprintf("reading at byte %d", r.off), attempts{n: r.failures}, r.ctx.Err())
	}
	a, err := r.open()
	if isCode(err, "PreconditionFailed") {
		err = errReplaced
	}
	if err != nil {
		r.body = io.NopCloser(strings.NewReader(""))
		return r.s.failAt("get", r.key, fmt.Sprintf("resuming at byte %d", r.off), a, err)
	}
	return nil
}

func (r *objectReader) Close() error {
	r.err = fmt.Errorf("replica/s3: read %q after Close", r.key)
	return r.body.Close()
}

// List implements replica.Store.
func (s *store) List(ctx context.Context, prefix string) ([]replica.Object, error) {
	if err := replica.CheckPrefix(prefix); err != nil {
		return nil, s.fail("list", prefix, attempts{}, err)
	}
	objs := []replica.Object{}
	after := "" // the last name listed: a retry goes on from there
	noOwner := false
	a, err := s.retry(ctx, func() error {
		opts := minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true, StartAfter: after, FetchOwner: &noOwner}
		for o := range s.core.ListObjectsIter(ctx, s.bucket, opts) {
			if o.Err != nil {
				return o.Err
			}
			after = o.Key
			key, ok := strings.CutPrefix(o.Key, s.prefix)
			if !ok || replica.CheckKey(key) != nil {
				continue // a "directory/" marker, or not an object of ours
			}
			objs = append(objs, replica.Object{Key: key, Size: o.Size})
		}
		// The iterator stops without a word when ctx ends.
		return ctx.Err()
	})
	if err != nil {
		return nil, s.fail("list", prefix, a, err)
	}
	slices.SortFunc(objs, func(a, b replica.Object) int { return strings.Compare(a.Key, b.Key) })
	return objs, nil
}

// Delete implements replica.Store.
func (s *store) Delete(ctx context.Context, key string) error {
	name, err := s.name(key)
	if err != nil {
		return s.fail("delete", key, attempts{}, err)
	}
	a, err := s.retry(ctx, func() error {
		err := s.core.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{})
		if isCode(err, "NoSuchKey") {
			return nil // some servers say so; S3 does not
		}
		return err
	})
	if err != nil {
		return s.fail("delete", key, a, err)
	}
	return nil
}
