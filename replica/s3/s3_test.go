package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/instadump/instadump/internal/versitygw"
	"github.com/instadump/instadump/replica"
	"github.com/instadump/instadump/replica/replicatest"
	"github.com/instadump/instadump/replica/s3"
)

func getAll(t *testing.T, s replica.Store, key string) ([]byte, error) {
	t.Helper()
	rc, err := s.Get(t.Context(), key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestConformance(t *testing.T) {
	s := s3.NewTestStore(t, serverConfig(t))
	replicatest.TestStore(t, s)
}

// The conformance tests hold with objects sent in one PUT up to 16 MiB,
// the default.
func TestConformanceDefaultPartSize(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	cfg := serverConfig(t)
	cfg.PartSize = 0
	replicatest.TestStore(t, s3.NewTestStore(t, cfg))
}

// Every key is under the prefix: stores with different prefixes in one
// bucket do not see each other's objects.
func TestPrefixScoping(t *testing.T) {
	cfg := serverConfig(t)
	base := cfg.Prefix
	cfg.Prefix = base + "/a"
	a := s3.NewTestStore(t, cfg)
	cfg.Prefix = base + "/ab/" // the trailing "/" is dropped
	ab := s3.NewTestStore(t, cfg)
	cfg.Prefix = base
	parent := s3.NewTestStore(t, cfg)
	ctx := t.Context()
	for _, s := range []replica.Store{a, ab} {
		if err := s.Put(ctx, "k", strings.NewReader(s.String()), int64(len(s.String()))); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []replica.Store{a, ab} {
		got, err := getAll(t, s, "k")
		if err != nil || string(got) != s.String() {
			t.Errorf("%s: Get(k) = %q, %v", s, got, err)
		}
		objs, err := s.List(ctx, "")
		if err != nil || len(objs) != 1 || objs[0].Key != "k" {
			t.Errorf("%s: List = %v, %v; want only k", s, objs, err)
		}
	}
	objs, err := parent.List(ctx, "")
	if err != nil || len(objs) != 2 || objs[0].Key != "a/k" || objs[1].Key != "ab/k" {
		t.Errorf("the parent prefix lists %v, %v; want a/k and ab/k", objs, err)
	}
	if err := a.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := getAll(t, ab, "k"); err != nil {
		t.Errorf("deleting k under one prefix touched the other: %v", err)
	}
}

// Transient failures are retried, per request; permanent ones are not.
func TestRetries(t *testing.T) {
	cfg, p := proxied(t)
	s := s3.Fast(s3.NewTestStore(t, cfg))
	ctx := t.Context()
	data := replicatest.Data(1, 1000)

	for _, code := range []struct {
		status int
		code   string
	}{{503, "SlowDown"}, {500, "InternalError"}, {502, ""}, {409, "ConditionalRequestConflict"}, {429, ""}} {
		p.add(&rule{method: "PUT", times: 2, status: code.status, code: code.code})
		before := p.count("PUT")
		if err := s.Put(ctx, "retried", bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatalf("Put through two %d %s: %v", code.status, code.code, err)
		}
		if n := p.count("PUT") - before; n != 3 {
			t.Errorf("Put through two %d %s made %d requests, want 3", code.status, code.code, n)
		}
	}

	for _, tc := range []struct {
		status int
		code   string
		class  error
		hint   string
	}{
		{403, "AccessDenied", replica.ErrMisconfigured, "access denied"},
		{403, "SignatureDoesNotMatch", replica.ErrMisconfigured, "credentials"},
		{404, "NoSuchBucket", replica.ErrMisconfigured, "does not exist"},
		{501, "NotImplemented", replica.ErrMisconfigured, "conditional writes"},
		{400, "InvalidArgument", nil, "400 Bad Request (InvalidArgument)"},
	} {
		p.add(&rule{method: "PUT", times: 1, status: tc.status, code: tc.code})
		before := p.count("PUT")
		err := s.Create(ctx, "permanent", bytes.NewReader(data), int64(len(data)))
		if err == nil || (tc.class != nil && !errors.Is(err, tc.class)) || !strings.Contains(err.Error(), tc.hint) {
			t.Errorf("Create answered %d %s: %v; want %v saying %q", tc.status, tc.code, err, tc.class, tc.hint)
		}
		if errors.Is(err, replica.ErrUnavailable) {
			t.Errorf("Create answered %d %s: %v is ErrUnavailable", tc.status, tc.code, err)
		}
		if n := p.count("PUT") - before; n != 1 {
			t.Errorf("Create answered %d %s made %d requests, want 1 (no retry)", tc.status, tc.code, n)
		}
	}

	// Retries run out: ErrUnavailable, saying so.
	cfg.MaxAttempts = 3
	limited := s3.Fast(s3.NewTestStore(t, cfg))
	p.add(&rule{method: "GET", times: 3, status: 503, code: "ServiceUnavailable"})
	_, err := limited.Get(ctx, "retried")
	if !errors.Is(err, replica.ErrUnavailable) || !strings.Contains(err.Error(), "after 3 attempts") || !strings.Contains(err.Error(), "try again later") {
		t.Errorf("Get through three 503s: %v; want ErrUnavailable after 3 attempts", err)
	}

	// Each part of a multipart upload is retried on its own.
	big := replicatest.Data(2, 2*s3.MinPartSize+10)
	p.add(&rule{method: "PUT", query: "partNumber", times: 2, status: 503, code: "SlowDown"})
	before := p.count("PUT")
	if err := s.Put(ctx, "big", &onlyReader{bytes.NewReader(big)}, int64(len(big))); err != nil {
		t.Fatalf("multipart Put through two 503s: %v", err)
	}
	if n := p.count("PUT") - before; n != 3+2 {
		t.Errorf("multipart Put of 3 parts through two 503s made %d PUTs, want 5", n)
	}
	got, err := getAll(t, s, "big")
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("the object after retried parts: %d bytes, %v", len(got), err)
	}
}

// onlyReader hides every method but Read.
type onlyReader struct{ r io.Reader }

func (o *onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// A Create whose answer is lost is retried, gets 412, and finds by its
// token that the object is its own: success, not ErrExists. Another
// writer's Create still gets ErrExists.
func TestLostResponse(t *testing.T) {
	cfg, p := proxied(t)
	s := s3.Fast(s3.NewTestStore(t, cfg))
	ctx := t.Context()

	small := replicatest.Data(3, 3000)
	p.add(&rule{method: "PUT", times: 1, lose: true})
	if err := s.Create(ctx, "lost/small", bytes.NewReader(small), int64(len(small))); err != nil {
		t.Fatalf("Create whose first answer was lost: %v", err)
	}
	if err := s.Create(ctx, "lost/small", bytes.NewReader(small), int64(len(small))); !errors.Is(err, replica.ErrExists) {
		t.Fatalf("a second Create: %v, want ErrExists", err)
	}

	big := replicatest.Data(4, s3.MinPartSize+10)
	p.add(&rule{method: "POST", query: "uploadId", times: 1, lose: true})
	if err := s.Create(ctx, "lost/big", &onlyReader{bytes.NewReader(big)}, int64(len(big))); err != nil {
		t.Fatalf("multipart Create whose completion's answer was lost: %v", err)
	}
	got, err := getAll(t, s, "lost/big")
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("the object: %d bytes, %v", len(got), err)
	}
	p.add(&rule{method: "POST", query: "uploadId", times: 1, lose: true})
	if err := s.Put(ctx, "lost/big", bytes.NewReader(big), int64(len(big))); err != nil {
		t.Fatalf("multipart Put whose completion's answer was lost: %v", err)
	}
}

// A reader whose connection breaks mid-object resumes where it was.
func TestGetResumes(t *testing.T) {
	cfg, p := proxied(t)
	s := s3.Fast(s3.NewTestStore(t, cfg))
	data := replicatest.Data(5, 3<<20)
	if err := s.Put(t.Context(), "resume", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	p.add(&rule{method: "GET", times: 3, cutAfter: 700 << 10})
	before := p.count("GET")
	got, err := getAll(t, s, "resume")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get through three broken connections: %d bytes, %v", len(got), err)
	}
	if n := p.count("GET") - before; n != 4 {
		t.Errorf("Get through three broken connections made %d requests, want 4", n)
	}

	// Replaced while read: an error, never a mix of two objects. The
	// connection breaks after 2000 bytes; by then the object has changed,
	// and the resumed request, conditional on the old ETag, is refused.
	p.add(&rule{method: "GET", times: 1, cutAfter: 2000})
	rc, err := s.Get(t.Context(), "resume")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	head := make([]byte, 1000)
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	other := replicatest.Data(6, 3<<20)
	if err := s.Put(t.Context(), "resume", bytes.NewReader(other), int64(len(other))); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(rc)
	if err == nil || !strings.Contains(err.Error(), "replaced while it was read") {
		t.Errorf("a reader of a replaced object: %d more bytes, %v; want an error saying the object was replaced", len(rest), err)
	}
	if !bytes.Equal(append(head, rest...), data[:len(head)+len(rest)]) {
		t.Errorf("a reader of a replaced object yielded bytes of the new one")
	}
}

// Wrong credentials or bucket: a permanent error at once, saying what to
// check, never showing the secret.
func TestWrongCredentials(t *testing.T) {
	cfg := serverConfig(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		edit func(*s3.Config)
		want string
	}{
		{"secret", func(c *s3.Config) { c.SecretKey = "wrong-secret-" + c.Prefix }, "credentials"}, // the prefix is random
		{"access key", func(c *s3.Config) { c.AccessKey = "wrong-" + c.Prefix }, "credentials"},
		{"bucket", func(c *s3.Config) { c.Bucket = "no-such-bucket-" + c.Prefix }, "does not exist"},
	} {
		c := cfg
		tc.edit(&c)
		s := s3.NewTestStore(t, c)
		for op, err := range map[string]error{
			"Put":    s.Put(ctx, "k", strings.NewReader("v"), 1),
			"Create": s.Create(ctx, "k", strings.NewReader("v"), 1),
			"Get":    func() error { _, err := s.Get(ctx, "k"); return err }(),
			"List":   func() error { _, err := s.List(ctx, ""); return err }(),
			"Delete": s.Delete(ctx, "k"),
		} {
			switch {
			case !errors.Is(err, replica.ErrMisconfigured):
				t.Errorf("wrong %s: %s: %v, want ErrMisconfigured", tc.name, op, err)
			case !strings.Contains(err.Error(), tc.want):
				t.Errorf("wrong %s: %s: %v, want it to say %q", tc.name, op, err, tc.want)
			case strings.Contains(err.Error(), c.SecretKey) || strings.Contains(err.Error(), cfg.SecretKey):
				t.Errorf("wrong %s: %s: the error shows the secret: %v", tc.name, op, err)
			case s3.Attempts(err) != 1:
				t.Errorf("wrong %s: %s: %v was retried", tc.name, op, err)
			}
		}
	}
}

// A server that hangs: the ctx's deadline ends every operation, with the
// ctx's error.
func TestSlowServer(t *testing.T) {
	v := versitygw.Own(t)
	s := s3.NewTestStore(t, v.Config())
	if err := s.Put(t.Context(), "k", strings.NewReader("v"), 1); err != nil {
		t.Fatal(err)
	}
	v.Pause()
	defer v.Resume()
	data := replicatest.Data(7, 2*s3.MinPartSize)
	for op, call := range map[string]func(context.Context) error{
		"Put":       func(ctx context.Context) error { return s.Put(ctx, "k", strings.NewReader("w"), 1) },
		"Put parts": func(ctx context.Context) error { return s.Put(ctx, "big", bytes.NewReader(data), int64(len(data))) },
		"Create":    func(ctx context.Context) error { return s.Create(ctx, "new", strings.NewReader("w"), 1) },
		"Get":       func(ctx context.Context) error { _, err := s.Get(ctx, "k"); return err },
		"List":      func(ctx context.Context) error { _, err := s.List(ctx, ""); return err },
		"Delete":    func(ctx context.Context) error { return s.Delete(ctx, "k") },
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		err := call(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s on a hung server: %v, want context.DeadlineExceeded", op, err)
		}
	}
	// The server now runs the requests it had queued, whatever their
	// callers made of them; then it works as before.
	v.Resume()
	if err := s.Put(t.Context(), "after", strings.NewReader("a"), 1); err != nil {
		t.Fatalf("after the server resumed: %v", err)
	}
	if got, err := getAll(t, s, "after"); err != nil || string(got) != "a" {
		t.Fatalf("after the server resumed: %q, %v", got, err)
	}
}

// killingReader yields data and calls at once it has yielded cut bytes.
// In an io.SectionReader it is read in order or at offsets.
type killingReader struct {
	data []byte
	cut  int64
	at   func()
	once sync.Once
}

func (k *killingReader) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > k.cut {
		k.once.Do(k.at)
	}
	if off >= int64(len(k.data)) {
		return 0, io.EOF
	}
	n := copy(p, k.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// goroutines waits for the goroutines to come back to at most n, and
// fails the test with their stacks if they do not.
func goroutines(t *testing.T, n int) {
	t.Helper()
	for range 300 { // 30 s at most
		if runtime.NumGoroutine() <= n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
}

// The server is killed during an upload and restarted: the upload fails
// or retries to success, never leaves part of an object visible, and
// leaves no goroutine behind.
func TestServerKilledMidUpload(t *testing.T) {
	v := versitygw.Own(t)
	cfg := v.Config()
	cfg.MaxAttempts = 30
	for _, tc := range []struct {
		name    string
		size    int
		plain   bool
		restart bool
	}{
		{"one PUT, seekable", 4 << 20, false, true},
		{"parts, seekable", 6 * s3.MinPartSize, false, true},
		{"parts, plain reader", 6 * s3.MinPartSize, true, true},
		{"parts, server stays down", 6 * s3.MinPartSize, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			if !tc.restart {
				c.MaxAttempts = 3
			}
			s := s3.Fast(s3.NewTestStore(t, c))
			// Warm up, so that what the client keeps (a connection, its
			// pools) is counted in the baseline.
			if err := s.Put(t.Context(), "warm", strings.NewReader("w"), 1); err != nil {
				t.Fatal(err)
			}
			s.Close()
			base := runtime.NumGoroutine()

			data := replicatest.Data(8, tc.size)
			old := []byte("the old object")
			if err := s.Put(t.Context(), "obj", bytes.NewReader(old), int64(len(old))); err != nil {
				t.Fatal(err)
			}
			restarted := make(chan error, 1)
			kr := &killingReader{data: data, cut: int64(tc.size) * 2 / 3, at: func() {
				v.Kill()
				if !tc.restart {
					restarted <- nil
					return
				}
				go func() { time.Sleep(300 * time.Millisecond); restarted <- v.Start() }()
			}}
			var r io.Reader = io.NewSectionReader(kr, 0, int64(tc.size))
			if tc.plain {
				r = &onlyReader{r}
			}
			err := s.Put(t.Context(), "obj", r, int64(tc.size))
			if rerr := <-restarted; rerr != nil {
				t.Fatal(rerr)
			}
			if !tc.restart {
				if err == nil {
					t.Fatal("Put succeeded with the server down")
				}
				if err := v.Start(); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("Put: %v", err)
			got, gerr := getAll(t, s, "obj")
			switch {
			case gerr != nil:
				t.Fatalf("after the restart, Get: %v", gerr)
			case err == nil && !bytes.Equal(got, data):
				t.Fatalf("Put succeeded, but the object is %d bytes that are not the new one", len(got))
			case err != nil && !errors.Is(err, replica.ErrUnavailable):
				t.Fatalf("Put failed with %v, want ErrUnavailable", err)
			case err != nil && !bytes.Equal(got, old):
				t.Fatalf("Put failed, but the object is %d bytes that are not the old one", len(got))
			}
			s.Close()
			goroutines(t, base)
		})
	}
}

// Canceling a Put or Get in flight leaves no goroutine behind.
func TestCancelNoLeak(t *testing.T) {
	s := s3.NewTestStore(t, serverConfig(t))
	data := replicatest.Data(9, 3*s3.MinPartSize)
	if err := s.Put(t.Context(), "obj", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	s.Close()
	base := runtime.NumGoroutine()
	for i := range 3 {
		ctx, cancel := context.WithCancel(t.Context())
		kr := &killingReader{data: data, cut: int64(len(data) / 2), at: cancel}
		var r io.Reader = io.NewSectionReader(kr, 0, int64(len(data)))
		if i%2 == 1 {
			r = &onlyReader{r}
		}
		if err := s.Put(ctx, fmt.Sprint("c", i), r, int64(len(data))); !errors.Is(err, context.Canceled) {
			t.Fatalf("Put canceled midway: %v", err)
		}
		cancel()
		ctx, cancel = context.WithCancel(t.Context())
		rc, err := s.Get(ctx, "obj")
		if err != nil {
			t.Fatal(err)
		}
		io.ReadFull(rc, make([]byte, 1000))
		cancel()
		if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
			t.Fatalf("Get canceled midway: %v", err)
		}
		rc.Close()
	}
	s.Close()
	goroutines(t, base)
}

// Uploads and downloads stream: a large object is never held whole.
func TestBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	s := s3.NewTestStore(t, serverConfig(t))
	const size = 64 << 20
	data := replicatest.Data(10, 1<<20)
	for _, plain := range []bool{false, true} {
		var r io.Reader = repeatReader(data, size)
		if plain {
			r = &onlyReader{r}
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if err := s.Put(t.Context(), "big", r, size); err != nil {
			t.Fatal(err)
		}
		rc, err := s.Get(t.Context(), "big")
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.CopyBuffer(io.Discard, rc, make([]byte, 64<<10))
		rc.Close()
		if err != nil || n != size {
			t.Fatalf("read back %d bytes, %v", n, err)
		}
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("plain=%v: a %d MiB round trip allocated %.1f MiB", plain, size>>20, float64(alloc)/(1<<20))
		if alloc > size/2 {
			t.Errorf("plain=%v: a %d MiB round trip allocated %d MiB: the object is being held", plain, size>>20, alloc>>20)
		}
	}
}

// repeatReader yields size bytes repeating data, with no buffer of its
// own; it is an io.ReaderAt and io.Seeker.
func repeatReader(data []byte, size int64) *io.SectionReader {
	return io.NewSectionReader(repeated(data), 0, size)
}

// repeated is data repeated without end.
type repeated []byte

func (r repeated) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r[off%int64(len(r)):])
		n += c
		off += int64(c)
	}
	return n, nil
}
