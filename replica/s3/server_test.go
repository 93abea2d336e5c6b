package s3

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// How to reach an S3 server, from the environment (.ci/versitygw exports
// these).
const (
	envEndpoint  = "INSTADUMP_S3_ENDPOINT"   // host:port
	envBucket    = "INSTADUMP_S3_BUCKET"     // an existing bucket
	envAccess    = "INSTADUMP_S3_ACCESS_KEY" //
	envSecret    = "INSTADUMP_S3_SECRET_KEY" //
	envInsecure  = "INSTADUMP_S3_INSECURE"   // "1" for plain HTTP
	envVersitygw = "INSTADUMP_VERSITYGW"     // the versitygw binary, for tests that run their own
)

const howToRun = "no S3 server to test against: run `source .ci/versitygw` first (it installs and starts versitygw on 127.0.0.1 and exports the variables), " +
	"or set " + envVersitygw + " to a versitygw binary, or set " + envEndpoint + ", " + envBucket + ", " + envAccess + ", " + envSecret +
	" (and " + envInsecure + "=1 for plain HTTP)"

var (
	sharedOnce sync.Once
	shared     *versity // started for this package if only envVersitygw is set
	sharedErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.stop()
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// serverConfig returns the Config of the S3 server to test against, with
// a fresh prefix, or skips the test saying how to run it.
func serverConfig(t testing.TB) Config {
	t.Helper()
	if ep := os.Getenv(envEndpoint); ep != "" {
		return Config{
			Endpoint:  ep,
			Bucket:    os.Getenv(envBucket),
			AccessKey: os.Getenv(envAccess),
			SecretKey: os.Getenv(envSecret),
			Insecure:  os.Getenv(envInsecure) == "1",
			Region:    "us-east-1",
			Prefix:    "test-" + randomHex(6),
			PartSize:  MinPartSize,
		}
	}
	if os.Getenv(envVersitygw) == "" {
		t.Skip(howToRun)
	}
	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "instadump-versitygw-")
		if err != nil {
			sharedErr = err
			return
		}
		shared, sharedErr = startVersity(os.Getenv(envVersitygw), dir)
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared.config()
}

// ownServer starts a versitygw for this test alone (to kill, stop or
// restart it), or skips the test.
func ownServer(t *testing.T) *versity {
	t.Helper()
	bin := os.Getenv(envVersitygw)
	if bin == "" {
		t.Skip("this test runs its own versitygw: set " + envVersitygw + " to the binary (`source .ci/versitygw` does)")
	}
	v, err := startVersity(bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.stop)
	return v
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// versity is a versitygw process serving a directory on a loopback port.
type versity struct {
	bin, dir, addr string
	access, secret string
	bucket         string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error // cmd's Wait
	log    *os.File
}

func startVersity(bin, dir string) (*versity, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	v := &versity{bin: bin, dir: dir, addr: addr, access: "test-" + randomHex(4), secret: randomHex(16), bucket: "instadump-test"}
	// The posix backend serves each directory of its root as a bucket.
	if err := os.MkdirAll(filepath.Join(dir, "data", v.bucket), 0o755); err != nil {
		return nil, err
	}
	if err := v.start(); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *versity) config() Config {
	return Config{
		Endpoint:  v.addr,
		Bucket:    v.bucket,
		AccessKey: v.access,
		SecretKey: v.secret,
		Insecure:  true,
		Region:    "us-east-1",
		Prefix:    "test-" + randomHex(6),
		PartSize:  MinPartSize,
	}
}

// start runs the server and waits until it answers.
func (v *versity) start() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	logf, err := os.OpenFile(filepath.Join(v.dir, "versitygw.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(v.bin, "--port", v.addr, "--health", "/health", "--quiet", "posix", filepath.Join(v.dir, "data"))
	// Credentials by environment, not argument: arguments are visible to
	// every user of the machine.
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+v.access, "ROOT_SECRET_ACCESS_KEY="+v.secret)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", v.bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	v.cmd, v.exited, v.log = cmd, exited, logf
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	for range 600 { // 30 s at most
		select {
		case err := <-exited:
			logf.Close()
			v.cmd = nil
			out, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("versitygw exited (%v) before answering on %s: %s", err, v.addr, out)
		default:
		}
		resp, err := client.Get("http://" + v.addr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	<-exited
	logf.Close()
	v.cmd = nil
	return fmt.Errorf("versitygw did not answer on %s within 30 s", v.addr)
}

// kill ends the server at once (SIGKILL), as a crash would.
func (v *versity) kill() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cmd == nil {
		return
	}
	v.cmd.Process.Signal(syscall.SIGCONT) // in case it was paused
	v.cmd.Process.Kill()
	<-v.exited
	v.log.Close()
	v.cmd = nil
}

// pause stops the server's process (SIGSTOP): connections are accepted by
// the kernel and never answered, as by a server that hangs.
func (v *versity) pause() { v.signal(syscall.SIGSTOP) }

// resume continues a paused server.
func (v *versity) resume() { v.signal(syscall.SIGCONT) }

func (v *versity) signal(sig os.Signal) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cmd != nil {
		v.cmd.Process.Signal(sig)
	}
}

func (v *versity) stop() { v.kill() }

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
func proxied(t *testing.T) (Config, *proxy) {
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
