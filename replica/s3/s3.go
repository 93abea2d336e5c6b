// Package s3 is a replica.Store in S3-compatible object storage, through
// github.com/minio/minio-go. Its tests run against versitygw.
//
//	st, err := s3.New(s3.Config{
//		Endpoint:  "s3.eu-west-1.amazonaws.com",
//		Bucket:    "backups",
//		Prefix:    "instadump/db1",
//		AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"),
//		SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
//		Region:    "eu-west-1",
//	})
//
// Every key lives under Config.Prefix: the key "a/000017.seg" is the
// object "instadump/db1/a/000017.seg", and List sees nothing outside the
// prefix. Requests use TLS unless Config.Insecure is set.
//
// # Uploads
//
// An object of up to Config.PartSize bytes is one PUT; a larger one is a
// multipart upload of parts of that size, completed only once every part
// is stored, and aborted if the upload fails. Either way the server makes
// the object visible whole or not at all. Create sends If-None-Match: *
// with the PUT, or with the request completing a multipart upload, so the
// server refuses it (412) if the key exists. The server must support
// conditional writes (AWS S3 does since 2024, and versitygw does); one
// that does not either answers 501, which Create reports as
// replica.ErrMisconfigured, or ignores the header: check a new server with
// two Creates of one key.
//
// Memory is bounded: a body that is an io.ReaderAt and io.Seeker (an
// *os.File, a *bytes.Reader) is read at offsets, a part at a time, and
// re-read when a request is retried; any other reader is read into one
// pooled buffer of at most PartSize bytes per upload, which a retry
// resends. Nothing holds a whole large object.
//
// # Retries
//
// Failures that may pass (a refused, reset or timed-out connection, HTTP
// 5xx but 501, 408, 429, throttling, a conflicting concurrent conditional
// write) are retried per request, with exponential backoff and jitter (from
// 100 ms doubling to at most 5 s), up to Config.MaxAttempts attempts and
// never past ctx. A multipart upload retries the part that failed, not the
// whole object. minio-go's own retries are turned off, so nothing is
// retried twice over. Other failures are returned at once, saying what to
// check: bad credentials, missing permissions, a missing bucket, a wrong
// region, a TLS mismatch (replica.ErrMisconfigured); an existing key for
// Create (replica.ErrExists); an absent one for Get (replica.ErrNotFound).
// A failure left after retrying wraps replica.ErrUnavailable.
//
// A retried write whose first attempt may have reached the server (the
// connection broke before the answer came) is checked, not guessed:
// every upload carries a random token in its metadata
// (x-amz-meta-instadump-write-id), and when a retried Create is refused
// with 412, or a retried completion finds its upload gone, the object's
// token says whether the earlier attempt did create it.
//
// A reader from Get resumes where it was, with a ranged GET conditional
// on the object's ETag, if its connection fails mid-object; if the object
// was replaced meanwhile it fails instead of mixing two objects.
//
// # Security
//
// The secret key never appears in String, in an error or in a log line
// (errors are scrubbed of it, as a second line of defence). Use TLS for
// anything but a test server on the loopback interface: with Insecure,
// requests are still signed but travel in clear.
package s3

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/instadump/instadump/replica"
)

// Config locates a bucket and says how to reach it.
type Config struct {
	// Endpoint is the server's host, with a port if not the scheme's
	// default, and without a scheme: "s3.amazonaws.com", "127.0.0.1:7070".
	Endpoint string
	// Bucket is the bucket's name. It must exist.
	Bucket string
	// Prefix is where in the bucket the store lives, as "a/b" (a trailing
	// "/" is dropped); empty for the bucket's root.
	Prefix string
	// AccessKey and SecretKey are the credentials; both empty for
	// anonymous access (which servers allow only to public buckets).
	AccessKey, SecretKey string
	// Region is the bucket's region; empty lets the client ask the server
	// once. Servers other than AWS mostly accept "us-east-1".
	Region string
	// Insecure uses plain HTTP instead of TLS, for a test server on the
	// loopback interface.
	Insecure bool

	// PartSize is the largest object sent in one PUT and the size of the
	// parts of larger ones: DefaultPartSize if 0, at least MinPartSize. It
	// is also the memory an upload from a plain io.Reader holds.
	PartSize int64
	// MaxAttempts is how many times a request is tried before a failure
	// that may pass is returned: DefaultMaxAttempts if 0; 1 to never retry.
	MaxAttempts int
}

// Defaults and limits of Config.
const (
	DefaultPartSize    = 16 << 20
	MinPartSize        = 5 << 20 // S3's smallest part but the last
	MaxPartSize        = 5 << 30 // S3's largest part
	maxParts           = 10000   // S3's most parts in one upload
	DefaultMaxAttempts = 10
)

// Backoff between attempts: the first wait is about minBackoff, each next
// one twice the last, up to maxBackoff, each drawn from its upper half.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// abortTimeout bounds the request aborting a failed multipart upload,
// which is sent even if the caller's ctx is done (to free the server's
// space) and so must not hold the caller for long.
const abortTimeout = 5 * time.Second

// metaToken is the user metadata holding an upload's random token.
const metaToken = "Instadump-Write-Id"

// store is the Store New returns.
type store struct {
	core        minio.Core
	tr          *http.Transport
	bucket      string
	prefix      string // Config.Prefix + "/", or ""
	desc        string // what String says
	secret      string // scrubbed from errors
	partSize    int64
	maxAttempts int
	minBackoff  time.Duration
	maxBackoff  time.Duration
	bufs        sync.Pool // *[]byte of partSize
}

// New returns a Store in the bucket and under the prefix cfg names. It
// checks cfg and makes no request: a wrong endpoint, credentials or bucket
// show in the first operation's error. The Store also implements
// io.Closer: Close drops its idle connections (the Store still works
// after it, opening new ones).
func New(cfg Config) (replica.Store, error) {
	s, err := newStore(cfg)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func newStore(cfg Config) (*store, error) {
	if err := check(&cfg); err != nil {
		return nil, fmt.Errorf("replica/s3: %w (%w)", err, replica.ErrMisconfigured)
	}
	tr, err := minio.DefaultTransport(!cfg.Insecure)
	if err != nil {
		return nil, fmt.Errorf("replica/s3: making the HTTP transport: %w", err)
	}
	var creds *credentials.Credentials
	if cfg.AccessKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	} else {
		creds = credentials.NewStatic("", "", "", credentials.SignatureAnonymous)
	}
	core, err := minio.NewCore(cfg.Endpoint, &minio.Options{
		Creds:     creds,
		Secure:    !cfg.Insecure,
		Region:    cfg.Region,
		Transport: tr,
		// One attempt per call: this package retries, knowing which
		// bodies can be resent and which failures are worth it.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("replica/s3: endpoint %q: %w (%w)", cfg.Endpoint, err, replica.ErrMisconfigured)
	}
	s := &store{
		core:        *core,
		tr:          tr,
		bucket:      cfg.Bucket,
		secret:      cfg.SecretKey,
		partSize:    cfg.PartSize,
		maxAttempts: cfg.MaxAttempts,
		minBackoff:  minBackoff,
		maxBackoff:  maxBackoff,
	}
	if cfg.Prefix != "" {
		s.prefix = cfg.Prefix + "/"
	}
	scheme := "https"
	if cfg.Insecure {
		scheme = "http"
	}
	s.desc = fmt.Sprintf("s3://%s/%s at %s://%s", cfg.Bucket, cfg.Prefix, scheme, cfg.Endpoint)
	s.bufs.New = func() any { b := make([]byte, s.partSize); return &b }
	return s, nil
}

// check validates cfg and fills in its defaults.
func check(cfg *Config) error {
	e := cfg.Endpoint
	switch {
	case e == "":
		return errors.New(`Config.Endpoint is empty: give the server's host[:port], such as "s3.amazonaws.com" or "127.0.0.1:7070"`)
	case strings.Contains(e, "://"):
		return fmt.Errorf("Config.Endpoint %q has a scheme: give only host[:port], and set Insecure for plain HTTP", e)
	case strings.ContainsAny(e, "/?#@ "):
		return fmt.Errorf("Config.Endpoint %q is not a host[:port]: give no path, query, user or spaces", e)
	}
	if strings.Contains(e, ":") {
		if _, port, err := net.SplitHostPort(e); err != nil || port == "" {
			return fmt.Errorf("Config.Endpoint %q is not a host[:port] (IPv6 addresses go in brackets: [::1]:7070)", e)
		}
	}
	if cfg.Bucket == "" {
		return errors.New("Config.Bucket is empty: name the bucket (it must exist)")
	}
	if err := s3utils.CheckValidBucketNameStrict(cfg.Bucket); err != nil {
		return fmt.Errorf("Config.Bucket %q is not a valid bucket name: %v", cfg.Bucket, err)
	}
	cfg.Prefix = strings.TrimRight(cfg.Prefix, "/")
	if cfg.Prefix != "" {
		if err := replica.CheckKey(cfg.Prefix); err != nil {
			return fmt.Errorf("Config.Prefix %q: %w", cfg.Prefix, err)
		}
		if len(cfg.Prefix) > replica.MaxKeyLen/2 {
			return fmt.Errorf("Config.Prefix is %d bytes long: keep it under %d, so keys fit in S3's %d", len(cfg.Prefix), replica.MaxKeyLen/2, replica.MaxKeyLen)
		}
	}
	if (cfg.AccessKey == "") != (cfg.SecretKey == "") {
		return errors.New("give both Config.AccessKey and Config.SecretKey, or neither for anonymous access")
	}
	switch {
	case cfg.PartSize == 0:
		cfg.PartSize = DefaultPartSize
	case cfg.PartSize < MinPartSize || cfg.PartSize > MaxPartSize:
		return fmt.Errorf("Config.PartSize %d is outside S3's part sizes, %d (5 MiB) to %d (5 GiB)", cfg.PartSize, MinPartSize, MaxPartSize)
	}
	switch {
	case cfg.MaxAttempts == 0:
		cfg.MaxAttempts = DefaultMaxAttempts
	case cfg.MaxAttempts < 0:
		return fmt.Errorf("Config.MaxAttempts %d is negative: give 1 for no retries, or 0 for the default", cfg.MaxAttempts)
	}
	return nil
}

// String implements replica.Store.
func (s *store) String() string { return s.desc }

// Close drops the idle connections.
func (s *store) Close() error {
	s.tr.CloseIdleConnections()
	return nil
}

// name returns the object name of key, or an error wrapping
// replica.ErrInvalidKey.
func (s *store) name(key string) (string, error) {
	if err := replica.CheckKey(key); err != nil {
		return "", err
	}
	name := s.prefix + key
	if len(name) > replica.MaxKeyLen {
		return "", fmt.Errorf("%w: the key %.40q... is %d bytes long with the prefix, more than S3's %d", replica.ErrInvalidKey, key, len(name), replica.MaxKeyLen)
	}
	return name, nil
}
