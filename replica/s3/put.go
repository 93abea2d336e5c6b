package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/minio/minio-go/v7"

	"github.com/instadump/instadump/replica"
)

// Put implements replica.Store.
func (s *store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.upload(ctx, "put", key, r, size, false)
}

// Create implements replica.Store.
func (s *store) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.upload(ctx, "create", key, r, size, true)
}

func (s *store) upload(ctx context.Context, op, key string, r io.Reader, size int64, exclusive bool) error {
	name, err := s.name(key)
	if err != nil {
		return s.fail(op, key, attempts{}, err)
	}
	if size < 0 {
		return s.fail(op, key, attempts{}, fmt.Errorf("the size %d is negative", size))
	}
	if err := ctx.Err(); err != nil {
		return s.fail(op, key, attempts{}, err)
	}
	src := newSource(r, size)
	defer src.release()
	u := &upload{s: s, op: op, key: key, name: name, src: src, size: size, exclusive: exclusive, token: randomToken()}
	if size <= s.partSize {
		err = u.single(ctx)
	} else {
		err = u.multipart(ctx)
	}
	if err != nil {
		return err
	}
	if err := src.finish(); err != nil {
		return s.fail(op, key, attempts{}, err)
	}
	return nil
}

// upload is one Put or Create.
type upload struct {
	s         *store
	op, key   string
	name      string // the object's name in the bucket
	src       *source
	size      int64
	exclusive bool
	token     string
}

func randomToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (u *upload) options() minio.PutObjectOptions {
	return minio.PutObjectOptions{UserMetadata: map[string]string{metaToken: u.token}}
}

// fail wraps err; a failure of the caller's reader is reported as that,
// whatever the request it broke made of it.
func (u *upload) fail(a attempts, err error) error { return u.failAt("", a, err) }

func (u *upload) failAt(stage string, a attempts, err error) error {
	if serr := u.src.failure(); serr != nil {
		err = serr
	}
	return u.s.failAt(u.op, u.key, stage, a, err)
}

// single sends the object in one PUT.
func (u *upload) single(ctx context.Context) error {
	part, err := u.src.part(ctx, 0, u.size, u.s)
	if err != nil {
		return u.fail(attempts{}, err)
	}
	opts := u.options()
	if u.exclusive {
		opts.SetMatchETagExcept("*")
	}
	a, err := u.s.retry(ctx, func() error {
		b := part.body()
		defer b.end()
		_, err := u.s.core.PutObject(ctx, u.s.bucket, u.name, b, u.size, "", "", opts)
		if serr := u.src.failure(); serr != nil {
			return serr
		}
		return err
	})
	if err != nil && u.exclusive && a.ambiguous && isCode(err, "PreconditionFailed") && u.ours(ctx) {
		// An earlier attempt created the object; its answer was lost.
		return nil
	}
	if err != nil {
		return u.fail(a, err)
	}
	return nil
}

// multipart sends the object in parts of partSize (more if the object
// would need more than S3's 10000), one part at a time, each retried on
// its own, then completes the upload; on failure it aborts it.
func (u *upload) multipart(ctx context.Context) (err error) {
	partSize := max(u.s.partSize, (u.size+maxParts-1)/maxParts)
	var id string
	a, err := u.s.retry(ctx, func() error {
		var err error
		id, err = u.s.core.NewMultipartUpload(ctx, u.s.bucket, u.name, u.options())
		return err
	})
	if err != nil {
		return u.failAt("starting a multipart upload", a, err)
	}
	completed := false
	defer func() {
		if !completed {
			u.abort(ctx, id)
		}
	}()
	var parts []minio.CompletePart
	total := (u.size + partSize - 1) / partSize
	for off, n := int64(0), 1; off < u.size; off, n = off+partSize, n+1 {
		stage := fmt.Sprintf("part %d of %d", n, total)
		length := min(partSize, u.size-off)
		part, err := u.src.part(ctx, off, length, u.s)
		if err != nil {
			return u.failAt(stage, attempts{}, err)
		}
		var p minio.ObjectPart
		a, err := u.s.retry(ctx, func() error {
			b := part.body()
			defer b.end()
			var err error
			p, err = u.s.core.PutObjectPart(ctx, u.s.bucket, u.name, id, n, b, length, minio.PutObjectPartOptions{})
			if serr := u.src.failure(); serr != nil {
				return serr
			}
			return err
		})
		if err != nil {
			return u.failAt(stage, a, err)
		}
		parts = append(parts, minio.CompletePart{PartNumber: n, ETag: p.ETag})
	}
	var opts minio.PutObjectOptions
	if u.exclusive {
		opts.SetMatchETagExcept("*")
	}
	a, err = u.s.retry(ctx, func() error {
		_, err := u.s.core.CompleteMultipartUpload(ctx, u.s.bucket, u.name, id, parts, opts)
		return err
	})
	if err != nil && a.ambiguous && (isCode(err, "NoSuchUpload") || isCode(err, "PreconditionFailed")) && u.ours(ctx) {
		// An earlier attempt completed the upload; its answer was lost.
		err = nil
	}
	if err != nil {
		return u.failAt("completing the multipart upload", a, err)
	}
	completed = true
	return nil
}

// abort abandons a multipart upload, freeing the server's space for its
// parts; once, even if ctx is done, for at most abortTimeout. A failure
// leaves the parts until the bucket's lifecycle rule for incomplete
// uploads (if any) removes them; the object is not affected.
func (u *upload) abort(ctx context.Context, id string) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	u.s.core.AbortMultipartUpload(actx, u.s.bucket, u.name, id)
}

// ours says whether the object now under the upload's name is the one
// this upload wrote, by its token.
func (u *upload) ours(ctx context.Context) bool {
	var info minio.ObjectInfo
	_, err := u.s.retry(ctx, func() error {
		var err error
		info, err = u.s.core.StatObject(ctx, u.s.bucket, u.name, minio.StatObjectOptions{})
		return err
	})
	if err != nil {
		return false
	}
	for k, v := range info.UserMetadata {
		if strings.EqualFold(k, metaToken) && v == u.token {
			return true
		}
	}
	return false
}

func isCode(err error, code string) bool {
	resp, ok := errorResponse(err)
	return ok && resp.Code == code
}

// sourceError is a failure of the caller's reader: it is never retried.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return "reading the object's bytes: " + e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// source is the caller's reader of an object's bytes. One that is an
// io.ReaderAt and io.Seeker is read at offsets from where it stood, as
// often as requests are retried; any other is read once, in order, a
// part at a time into a pooled buffer.
type source struct {
	ra     io.ReaderAt // nil: read r in order
	seeker io.Seeker
	base   int64 // ra's offset of the object's first byte
	r      io.Reader
	size   int64
	next   int64      // the offset r is at
	buf    *[]byte    // the buffer of r's parts, from pool
	pool   *sync.Pool // where buf goes back

	// The first failure of the caller's reader (wrapped). A transport may
	// still read an attempt's body after the attempt has returned, hence
	// the lock.
	mu  sync.Mutex
	err error
}

func newSource(r io.Reader, size int64) *source {
	src := &source{r: r, size: size}
	ra, ok1 := r.(io.ReaderAt)
	sk, ok2 := r.(io.Seeker)
	if ok1 && ok2 {
		if base, err := sk.Seek(0, io.SeekCurrent); err == nil {
			src.ra, src.seeker, src.base = ra, sk, base
		}
	}
	return src
}

func (src *source) failure() error {
	src.mu.Lock()
	defer src.mu.Unlock()
	return src.err
}

// fail records and returns a failure of the caller's reader.
func (src *source) fail(err error) error {
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.err == nil {
		src.err = &sourceError{err}
	}
	return src.err
}

// finish leaves a seekable reader just after the object, as if it had
// been read in order.
func (src *source) finish() error {
	if src.seeker == nil {
		return nil
	}
	if _, err := src.seeker.Seek(src.base+src.size, io.SeekStart); err != nil {
		return src.fail(err)
	}
	return nil
}

// part is the bytes [off, off+length) of a source.
type part struct {
	src         *source
	off, length int64
	data        []byte // the bytes, for a source read in order
}

// part returns the bytes [off, off+length). A source read in order must
// be asked for its parts in order, each after the last is done with:
// their bytes are read now, into one buffer (checking ctx between
// chunks).
func (src *source) part(ctx context.Context, off, length int64, s *store) (*part, error) {
	p := &part{src: src, off: off, length: length}
	if src.ra != nil {
		return p, nil
	}
	if off != src.next {
		panic("replica/s3: parts of a sequential source out of order")
	}
	switch {
	case length <= 64<<10:
		p.data = make([]byte, length)
	case length <= s.partSize:
		if src.buf == nil {
			src.pool = &s.bufs
			src.buf = s.bufs.Get().(*[]byte)
		}
		p.data = (*src.buf)[:length]
	default:
		p.data = make([]byte, length) // larger parts for objects over 10000 parts
	}
	for done := int64(0); done < length; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := io.ReadFull(src.r, p.data[done:min(length, done+1<<20)])
		done += int64(n)
		src.next += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, src.fail(fmt.Errorf("the reader ended after %d of %d bytes: %w", src.next, src.size, io.ErrUnexpectedEOF))
		}
		if err != nil {
			return nil, src.fail(err)
		}
	}
	return p, nil
}

// release returns the source's buffer to the pool, once the upload is
// over.
func (src *source) release() {
	if src.buf != nil {
		src.pool.Put(src.buf)
		src.buf = nil
	}
}

// body returns a fresh reader of the part's bytes, for one attempt. Call
// its end when the attempt is over.
func (p *part) body() *body {
	if p.data != nil || p.length == 0 {
		return &body{r: bytes.NewReader(p.data)}
	}
	return &body{r: &atReader{src: p.src, off: p.off, end: p.off + p.length}}
}

// body is one attempt's request body. Once the attempt is over it reads
// nothing more: an HTTP transport may go on reading a request's body after
// the response came (an early error answer), and by then the bytes behind
// it may be the next part's, or the caller's reader may be theirs again.
type body struct {
	mu   sync.Mutex
	r    io.Reader
	over bool
}

var errAttemptOver = errors.New("replica/s3: the request is over")

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.over {
		return 0, errAttemptOver
	}
	return b.r.Read(p)
}

func (b *body) end() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.over = true
}

// atReader reads [off, end) of a source's io.ReaderAt in order. A failure
// of the reader, or its end before end, is recorded as the source's.
type atReader struct {
	src      *source
	off, end int64
}

func (a *atReader) Read(b []byte) (int, error) {
	if a.off >= a.end {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), a.end-a.off)]
	n, err := a.src.ra.ReadAt(b, a.src.base+a.off)
	a.off += int64(n)
	switch {
	case n == len(b):
		return n, nil // io.ReaderAt may say io.EOF along with the last bytes
	case err == nil || errors.Is(err, io.EOF):
		return n, a.src.fail(fmt.Errorf("the reader ended after %d of %d bytes: %w", a.off, a.src.size, io.ErrUnexpectedEOF))
	default:
		return n, a.src.fail(err)
	}
}

var _ replica.Store = (*store)(nil)
