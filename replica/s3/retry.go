package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/instadump/instadump/replica"
)

// verdict is what a failed request means.
type verdict struct {
	retry  bool   // it may pass: try again
	class  error  // a replica sentinel, or nil
	detail string // the failure in words, with the server's status and code
	hint   string // what to check, or ""
}

// judge classifies err, the failure of one request.
func (s *store) judge(err error) verdict {
	var src *sourceError
	if errors.As(err, &src) {
		return verdict{detail: src.Error()}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The caller's ctx (checked by the caller), or a timeout of the
		// transport's own, which may pass.
		return verdict{retry: true, class: replica.ErrUnavailable, detail: err.Error()}
	}
	if resp, ok := errorResponse(err); ok {
		return s.judgeResponse(resp)
	}
	return judgeNetwork(err)
}

// errorResponse finds the server's error response in err's chain.
func errorResponse(err error) (minio.ErrorResponse, bool) {
	var resp minio.ErrorResponse
	if errors.As(err, &resp) && resp.StatusCode != 0 {
		return resp, true
	}
	return resp, false
}

// judgeResponse classifies an error response from the server.
func (s *store) judgeResponse(r minio.ErrorResponse) verdict {
	v := verdict{detail: fmt.Sprintf("%d %s", r.StatusCode, http.StatusText(r.StatusCode))}
	if r.Code != "" {
		v.detail += " (" + r.Code + ")"
	}
	if r.Message != "" {
		v.detail += ": " + r.Message
	}
	switch r.Code {
	case "NoSuchKey":
		v.class = replica.ErrNotFound
	case "PreconditionFailed":
		v.class = replica.ErrExists
	case "NoSuchUpload":
		// The caller decides: an upload completed already, or aborted.
	case "NoSuchBucket":
		v.class, v.hint = replica.ErrMisconfigured, fmt.Sprintf("the bucket %q does not exist: create it, or correct Config.Bucket", s.bucket)
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "XAdminUserNotFound", "InvalidToken", "ExpiredToken", "TokenRefreshRequired":
		v.class, v.hint = replica.ErrMisconfigured, "the server rejected the credentials: check Config.AccessKey and Config.SecretKey"
	case "AccessDenied", "AllAccessDisabled", "AccountProblem":
		v.class, v.hint = replica.ErrMisconfigured, fmt.Sprintf("access denied: check that the credentials may read, write, list and delete objects in the bucket %q under the prefix", s.bucket)
	case "RequestTimeTooSkewed":
		v.class, v.hint = replica.ErrMisconfigured, "this machine's clock differs from the server's by more than S3 allows: set it right (NTP)"
	case "AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException", "InvalidRegion":
		v.class, v.hint = replica.ErrMisconfigured, "the bucket is in another region"
		if r.Region != "" {
			v.hint += fmt.Sprintf(" (%s)", r.Region)
		}
		v.hint += ": set Config.Region, or the endpoint of the bucket's region"
	case "NotImplemented":
		v.class, v.hint = replica.ErrMisconfigured, "the server does not implement this request (conditional writes, If-None-Match, are needed for Create): use a server that does"
	case "ConditionalRequestConflict", "RequestTimeout", "SlowDown", "SlowDownWrite", "SlowDownRead",
		"Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestThrottled",
		"InternalError", "ServiceUnavailable", "OperationAborted":
		v.retry, v.class = true, replica.ErrUnavailable
	default:
		switch {
		case r.StatusCode == http.StatusNotImplemented:
			v.class, v.hint = replica.ErrMisconfigured, "the server does not implement this request (conditional writes, If-None-Match, are needed for Create): use a server that does"
		case r.StatusCode >= 500, r.StatusCode == http.StatusRequestTimeout, r.StatusCode == http.StatusTooManyRequests, r.StatusCode == 499:
			v.retry, v.class = true, replica.ErrUnavailable
		case r.StatusCode == http.StatusForbidden:
			v.class, v.hint = replica.ErrMisconfigured, "access denied: check the credentials and their permissions on the bucket"
		case r.StatusCode == http.StatusMovedPermanently || r.StatusCode == http.StatusTemporaryRedirect:
			v.class, v.hint = replica.ErrMisconfigured, "the server redirects: set Config.Region, or the endpoint of the bucket's region"
		case r.StatusCode == http.StatusBadRequest && strings.Contains(r.Message, "HTTP request to an HTTPS server"):
			v.class, v.hint = replica.ErrMisconfigured, "the endpoint speaks TLS: unset Config.Insecure"
		}
	}
	return v
}

// judgeNetwork classifies a failure to get an answer at all.
func judgeNetwork(err error) verdict {
	v := verdict{detail: err.Error()}
	var unknownCA x509.UnknownAuthorityError
	var badHost x509.HostnameError
	var badCert x509.CertificateInvalidError
	var dns *net.DNSError
	var recordHeader tls.RecordHeaderError
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &badHost), errors.As(err, &badCert):
		v.class, v.hint = replica.ErrMisconfigured, "the server's TLS certificate is not trusted for this endpoint: check Config.Endpoint and the certificate (SSL_CERT_FILE adds a CA)"
	case errors.As(err, &recordHeader) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		v.class, v.hint = replica.ErrMisconfigured, "the endpoint speaks plain HTTP: set Config.Insecure for a test server, or use the server's TLS port"
	case errors.As(err, &dns) && dns.IsNotFound:
		v.class, v.hint = replica.ErrMisconfigured, "no such host: check Config.Endpoint"
	default:
		// Refused, reset, cut short, timed out: the server may be back
		// soon.
		v.retry, v.class = true, replica.ErrUnavailable
	}
	return v
}

// attempts is the outcome of retry.
type attempts struct {
	n         int  // how many were made
	ambiguous bool // one failed in a way that may have taken effect
}

// retry calls call until it succeeds, fails in a way that will not pass,
// has been tried maxAttempts times, or ctx is done. It returns the last
// error as call returned it, or ctx's error if ctx ended the retries.
func (s *store) retry(ctx context.Context, call func() error) (attempts, error) {
	var a attempts
	backoff := s.minBackoff
	for {
		if err := ctx.Err(); err != nil {
			return a, err
		}
		a.n++
		err := call()
		if err == nil {
			return a, nil
		}
		if ctx.Err() != nil {
			return a, ctx.Err()
		}
		v := s.judge(err)
		if !v.retry || a.n >= s.maxAttempts {
			return a, err
		}
		a.ambiguous = true
		// Equal jitter: half the backoff, plus up to as much again.
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return a, fmt.Errorf("%w (while waiting to retry after: %v)", ctx.Err(), err)
		}
		backoff = min(2*backoff, s.maxBackoff)
	}
}

// opError is the error every operation returns: what failed, where, how
// often it was tried, why, and what to check.
type opError struct {
	op, key, where string
	stage          string // the step of the operation that failed, or ""
	attempts       int
	v              verdict
	err            error // the cause
	secret         string
}

func (e *opError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "replica/s3: %s %q in %s: ", e.op, e.key, e.where)
	if e.stage != "" {
		b.WriteString(e.stage + ": ")
	}
	b.WriteString(e.v.detail)
	if e.attempts > 1 {
		fmt.Fprintf(&b, " (after %d attempts)", e.attempts)
	}
	if e.v.hint != "" {
		b.WriteString(": " + e.v.hint)
	}
	if e.v.class != nil {
		fmt.Fprintf(&b, " (%v)", e.v.class)
	}
	msg := b.String()
	if len(e.secret) >= 4 {
		msg = strings.ReplaceAll(msg, e.secret, "[secret]")
	}
	return msg
}

// Unwrap returns the cause and the class, for errors.Is.
func (e *opError) Unwrap() []error {
	if e.v.class != nil {
		return []error{e.err, e.v.class}
	}
	return []error{e.err}
}

// fail returns the error for operation op on key, which ended with err
// after a.n attempts.
func (s *store) fail(op, key string, a attempts, err error) error {
	return s.failAt(op, key, "", a, err)
}

// failAt is fail for a step of the operation (a part of an upload).
func (s *store) failAt(op, key, stage string, a attempts, err error) error {
	var v verdict
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		// The caller's ctx ended it: no class, whatever the last failure.
		v = verdict{detail: err.Error()}
	case errors.Is(err, replica.ErrInvalidKey), errors.Is(err, replica.ErrExists), errors.Is(err, replica.ErrNotFound), err == errReplaced:
		v = verdict{detail: err.Error()}
	default:
		v = s.judge(err)
	}
	if v.retry {
		v.hint = "the server may be down or overloaded; try again later"
	}
	return &opError{op: op, key: key, where: s.desc, stage: stage, attempts: a.n, v: v, err: err, secret: s.secret}
}
