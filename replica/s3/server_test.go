package s3_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/instadump/instadump/internal/versitygw"
	"github.com/instadump/instadump/replica/s3"
)

var (
	sharedOnce sync.Once
	shared     *versitygw.Server // started for this package if only its binary is named
	sharedDir  string
	sharedErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Kill()
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

// serverConfig returns the Config of the S3 server to test against, with
// a fresh prefix: the one the environment names, or else one started for
// this package's tests if the environment names the versitygw binary; or
// skips the test saying how to run it.
func serverConfig(t testing.TB) s3.Config {
	t.Helper()
	bin := os.Getenv(versitygw.EnvVersitygw)
	if os.Getenv(versitygw.EnvEndpoint) != "" || bin == "" {
		return versitygw.Config(t)
	}
	sharedOnce.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "instadump-versitygw-")
		if sharedErr == nil {
			shared, sharedErr = versitygw.Start(bin, sharedDir)
		}
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared.Config()
}

// proxy is an HTTP proxy in front of a server that can fail requests on
// purpose: answer with an error instead of forwarding, forward and then
// drop the answer (a lost response), or cut an answer's body short.
type proxy struct {
	srv *httptest.Server
	rp  *httputil.ReverseProxy

	mu       sync.Mutex
	requests map[string]int // by method
	rules    []*rule
}

// rule fails the requests of a method (any, if empty) whose query has the
// given parameter (any, if empty), times times.
type rule struct {
	method, query string
	times         int
	status        int    // answer this status with code...
	code          string // ...instead of forwarding
	lose          bool   // forward, then close the connection unanswered
	cutAfter      int64  // forward, but close after this many body bytes (> 0)
}

func newProxy(t *testing.T, backend string) *proxy {
	t.Helper()
	u, err := url.Parse("http://" + backend)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{requests: map[string]int{}}
	p.rp = httputil.NewSingleHostReverseProxy(u)
	p.rp.ErrorLog = log.New(io.Discard, "", 0)
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

// proxied returns the Config of the server to test against, through a
// new proxy in front of it.
func proxied(t *testing.T) (s3.Config, *proxy) {
	t.Helper()
	cfg := serverConfig(t)
	p := newProxy(t, cfg.Endpoint)
	cfg.Endpoint = strings.TrimPrefix(p.srv.URL, "http://")
	return cfg, p
}

func (p *proxy) add(r *rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = append(p.rules, r)
}

func (p *proxy) count(method string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[method]
}

func (p *proxy) serve(w http.ResponseWriter, req *http.Request) {
	p.mu.Lock()
	p.requests[req.Method]++
	var hit *rule
	for _, r := range p.rules {
		if r.times > 0 && (r.method == "" || r.method == req.Method) && (r.query == "" || req.URL.Query().Has(r.query)) {
			r.times--
			hit = r
			break
		}
	}
	p.mu.Unlock()
	switch {
	case hit == nil:
		p.rp.ServeHTTP(w, req)
	case hit.status != 0:
		io.Copy(io.Discard, req.Body)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(hit.status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected by the test proxy</Message></Error>`, hit.code)
	case hit.lose:
		p.rp.ServeHTTP(httptest.NewRecorder(), req)
		panic(http.ErrAbortHandler) // closes the connection, unanswered
	case hit.cutAfter > 0:
		p.rp.ServeHTTP(&cutWriter{ResponseWriter: w, left: hit.cutAfter}, req)
	}
}

// cutWriter passes on a response until left bytes of its body, then
// aborts it.
type cutWriter struct {
	http.ResponseWriter
	left int64
}

func (c *cutWriter) Write(b []byte) (int, error) {
	if int64(len(b)) >= c.left {
		c.ResponseWriter.Write(b[:c.left])
		c.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	c.left -= int64(len(b))
	return c.ResponseWriter.Write(b)
}
