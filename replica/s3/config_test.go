package s3

import (
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/instadump/instadump/replica"
)

const testSecret = "s3cr3t-never-shown-0123456789"

func goodConfig() Config {
	return Config{Endpoint: "127.0.0.1:1", Bucket: "bucket", AccessKey: "AKIDEXAMPLE", SecretKey: testSecret, Insecure: true}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Endpoint = "" }, "Endpoint is empty"},
		{func(c *Config) { c.Endpoint = "https://s3.amazonaws.com" }, "has a scheme"},
		{func(c *Config) { c.Endpoint = "host/path" }, "not a host[:port]"},
		{func(c *Config) { c.Endpoint = "host:" }, "not a host[:port]"},
		{func(c *Config) { c.Endpoint = "::1:7070" }, "brackets"},
		{func(c *Config) { c.Bucket = "" }, "Bucket is empty"},
		{func(c *Config) { c.Bucket = "Bad_Bucket" }, "not a valid bucket name"},
		{func(c *Config) { c.Prefix = "a//b" }, "Prefix"},
		{func(c *Config) { c.Prefix = "../up" }, "Prefix"},
		{func(c *Config) { c.Prefix = strings.Repeat("p", 600) }, "Prefix is 600 bytes"},
		{func(c *Config) { c.SecretKey = "" }, "both Config.AccessKey and Config.SecretKey"},
		{func(c *Config) { c.AccessKey = "" }, "both Config.AccessKey and Config.SecretKey"},
		{func(c *Config) { c.PartSize = 1 << 20 }, "PartSize"},
		{func(c *Config) { c.PartSize = 6 << 30 }, "PartSize"},
		{func(c *Config) { c.MaxAttempts = -1 }, "MaxAttempts"},
	} {
		cfg := goodConfig()
		tc.edit(&cfg)
		_, err := New(cfg)
		if !errors.Is(err, replica.ErrMisconfigured) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v; want ErrMisconfigured saying %q", cfg, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), testSecret) {
			t.Errorf("New: the error shows the secret: %v", err)
		}
	}
	for _, edit := range []func(*Config){
		func(c *Config) {},
		func(c *Config) { c.Endpoint = "[::1]:7070"; c.Prefix = "a/b/" },
		func(c *Config) { c.Endpoint = "s3.amazonaws.com"; c.Insecure = false },
		func(c *Config) { c.AccessKey, c.SecretKey = "", "" },
	} {
		cfg := goodConfig()
		edit(&cfg)
		if _, err := New(cfg); err != nil {
			t.Errorf("New(%+v): %v", cfg, err)
		}
	}
}

func TestString(t *testing.T) {
	cfg := goodConfig()
	cfg.Prefix = "db1/"
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.String(), "s3://bucket/db1 at http://127.0.0.1:1"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if strings.Contains(s.String(), cfg.SecretKey) || strings.Contains(s.String(), cfg.AccessKey) {
		t.Errorf("String() = %q shows a credential", s.String())
	}
}

// A server that cannot be reached: ErrUnavailable after the retries,
// naming the store and never the secret.
func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := goodConfig()
	cfg.Endpoint = l.Addr().String()
	cfg.MaxAttempts = 2
	l.Close() // nothing listens there now
	s := fast(newTestStore(t, cfg))
	err = s.Put(t.Context(), "k", strings.NewReader("v"), 1)
	if !errors.Is(err, replica.ErrUnavailable) || !strings.Contains(err.Error(), "connection refused") ||
		!strings.Contains(err.Error(), "after 2 attempts") || !strings.Contains(err.Error(), s.String()) {
		t.Errorf("Put to a closed port: %v", err)
	}
	if strings.Contains(err.Error(), testSecret) {
		t.Errorf("the error shows the secret: %v", err)
	}
}

// TLS against plain HTTP, and an untrusted certificate: permanent errors
// saying what to change. (Plain HTTP against TLS is not recognised
// reliably: the server may reset the connection before its 400 arrives,
// which looks like a server going down, and is retried.)
func TestTLSMismatch(t *testing.T) {
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	tlsSrv := httptest.NewUnstartedServer(http.NotFoundHandler())
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	for _, tc := range []struct {
		addr     string
		insecure bool
		want     string
	}{
		{strings.TrimPrefix(plain.URL, "http://"), false, "speaks plain HTTP"},
		{strings.TrimPrefix(tlsSrv.URL, "https://"), false, "certificate"},
	} {
		cfg := goodConfig()
		cfg.Endpoint, cfg.Insecure, cfg.Region = tc.addr, tc.insecure, "us-east-1"
		s := fast(newTestStore(t, cfg))
		err := s.Put(t.Context(), "k", strings.NewReader("v"), 1)
		var oe *opError
		if !errors.Is(err, replica.ErrMisconfigured) || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &oe) || oe.attempts != 1 {
			t.Errorf("Insecure=%v against %s: %v; want ErrMisconfigured at once, saying %q", tc.insecure, tc.addr, err, tc.want)
		}
	}
}

func TestJudge(t *testing.T) {
	s := &store{bucket: "b"}
	for _, tc := range []struct {
		status int
		code   string
		retry  bool
		class  error
	}{
		{503, "SlowDown", true, replica.ErrUnavailable},
		{500, "InternalError", true, replica.ErrUnavailable},
		{504, "", true, replica.ErrUnavailable},
		{408, "", true, replica.ErrUnavailable},
		{429, "", true, replica.ErrUnavailable},
		{409, "ConditionalRequestConflict", true, replica.ErrUnavailable},
		{501, "NotImplemented", false, replica.ErrMisconfigured},
		{501, "", false, replica.ErrMisconfigured},
		{412, "PreconditionFailed", false, replica.ErrExists},
		{404, "NoSuchKey", false, replica.ErrNotFound},
		{404, "NoSuchBucket", false, replica.ErrMisconfigured},
		{404, "XAdminUserNotFound", false, replica.ErrMisconfigured},
		{403, "InvalidAccessKeyId", false, replica.ErrMisconfigured},
		{403, "RequestTimeTooSkewed", false, replica.ErrMisconfigured},
		{403, "", false, replica.ErrMisconfigured},
		{400, "AuthorizationHeaderMalformed", false, replica.ErrMisconfigured},
		{301, "PermanentRedirect", false, replica.ErrMisconfigured},
		{400, "EntityTooSmall", false, nil},
	} {
		v := s.judge(minio.ErrorResponse{StatusCode: tc.status, Code: tc.code})
		if v.retry != tc.retry || v.class != tc.class {
			t.Errorf("%d %s: retry %v, class %v; want %v, %v", tc.status, tc.code, v.retry, v.class, tc.retry, tc.class)
		}
	}
}
