// Package versitygw gives tests an S3 server to replicate to: the one
// .ci/versitygw started (its INSTADUMP_S3_* variables), or versitygw
// processes of their own (INSTADUMP_VERSITYGW names the binary) to kill,
// pause and restart. Tests skip, saying how to run them, when neither is
// there. Nothing in the library uses it.
package versitygw

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/instadump/instadump/replica/s3"
)

// The environment .ci/versitygw exports.
const (
	EnvEndpoint  = "INSTADUMP_S3_ENDPOINT"
	EnvBucket    = "INSTADUMP_S3_BUCKET"
	EnvAccess    = "INSTADUMP_S3_ACCESS_KEY"
	EnvSecret    = "INSTADUMP_S3_SECRET_KEY"
	EnvInsecure  = "INSTADUMP_S3_INSECURE"
	EnvVersitygw = "INSTADUMP_VERSITYGW"
)

const howTo = "no S3 server to test against: run `source .ci/versitygw` first (it starts versitygw on 127.0.0.1 and exports " +
	EnvEndpoint + ", " + EnvBucket + ", " + EnvAccess + ", " + EnvSecret + ", " + EnvInsecure + " and " + EnvVersitygw + ")"

// Config returns the configuration of the shared server the environment
// names, under a fresh prefix, or skips the test.
func Config(t testing.TB) s3.Config {
	t.Helper()
	ep := os.Getenv(EnvEndpoint)
	if ep == "" {
		t.Skip(howTo)
	}
	return s3.Config{
		Endpoint:  ep,
		Bucket:    os.Getenv(EnvBucket),
		AccessKey: os.Getenv(EnvAccess),
		SecretKey: os.Getenv(EnvSecret),
		Insecure:  os.Getenv(EnvInsecure) == "1",
		Region:    "us-east-1",
		Prefix:    "test-" + randomHex(6),
		PartSize:  s3.MinPartSize,
	}
}

// Server is a versitygw process of a test's own, serving a directory on
// a loopback port that stays the same across restarts.
type Server struct {
	bin, dir, addr string
	access, secret string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error
}

// Own starts a versitygw for the test alone, stopped when the test ends,
// or skips the test.
func Own(t *testing.T) *Server {
	t.Helper()
	bin := os.Getenv(EnvVersitygw)
	if bin == "" {
		t.Skip("this test runs its own versitygw: set " + EnvVersitygw + " to the binary (`source .ci/versitygw` does)")
	}
	s, err := Start(bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	return s
}

// Start starts the versitygw binary bin serving the directory dir (which
// the caller removes after Kill), and waits until it answers.
func Start(bin, dir string) (*Server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	s := &Server{bin: bin, dir: dir, addr: addr, access: "test-" + randomHex(4), secret: randomHex(16)}
	// The posix backend serves each directory of its root as a bucket.
	if err := os.MkdirAll(filepath.Join(s.dir, "data", "instadump-test"), 0o755); err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Config returns a configuration of the server under a fresh prefix.
func (s *Server) Config() s3.Config {
	return s3.Config{Endpoint: s.addr, Bucket: "instadump-test", AccessKey: s.access, SecretKey: s.secret,
		Insecure: true, Region: "us-east-1", Prefix: "test-" + randomHex(6), PartSize: s3.MinPartSize}
}

// Start starts the server (again) and waits until it answers.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	logf, err := os.OpenFile(filepath.Join(s.dir, "versitygw.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(s.bin, "--port", s.addr, "--health", "/health", "--quiet", "posix", filepath.Join(s.dir, "data"))
	// Credentials by environment: arguments are visible to every user.
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.access, "ROOT_SECRET_ACCESS_KEY="+s.secret)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s.cmd, s.exited = cmd, exited
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	for range 600 { // 30 s at most
		select {
		case err := <-exited:
			s.cmd = nil
			out, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("versitygw exited (%v) before answering on %s: %s", err, s.addr, out)
		default:
		}
		if resp, err := client.Get("http://" + s.addr + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	<-exited
	s.cmd = nil
	return fmt.Errorf("versitygw did not answer on %s within 30 s", s.addr)
}

// Kill ends the server at once (SIGKILL), as a crash would.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGCONT) // in case it was paused
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Pause stops the server's process (SIGSTOP): connections are accepted by
// the kernel and never answered, as by a server that hangs.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.cmd.Process.Signal(sig)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
