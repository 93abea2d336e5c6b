package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

// liveManifest returns the path of the only manifest in dir.
func liveManifest(t *testing.T, dir string) string {
	t.Helper()
	mans, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	if len(mans) != 1 {
		t.Fatalf("manifests %v", mans)
	}
	return mans[0]
}

// A last manifest record written whole and damaged since (its checksum
// fails) is damage: verify says so and exits 1; the listings still work,
// with a warning, showing the snapshot before it, and exit 1.
func TestVerifyFindsDamagedLastRecord(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	buildDB(t, dir)
	man := liveManifest(t, dir)
	data, _ := os.ReadFile(man)
	log, err := manifest.ReplayBytes(data, man)
	if err != nil {
		t.Fatal(err)
	}
	data[log.Offsets[len(log.Offsets)-1]+manifest.FrameHeaderSize+3] ^= 0x04
	os.WriteFile(man, data, 0o644)
	out, _, code := runCmd(t, "verify", dir)
	if code != 1 || !strings.Contains(out, "DAMAGED") || !strings.Contains(out, man) || strings.Contains(out, "intact") {
		t.Fatalf("verify of a damaged last record: exit %d\n%s", code, out)
	}
	out, errOut, code := runCmd(t, "snapshots", dir)
	if code != 1 || !strings.Contains(errOut, "WARNING") || !strings.Contains(out, "\n2 ") || strings.Contains(out, "\n3 ") {
		t.Fatalf("snapshots: exit %d\n%s\n%s", code, out, errOut)
	}
	out, _, code = runCmd(t, "manifest", dir)
	if code != 1 || !strings.Contains(out, "DAMAGED last record") || strings.Contains(out, "torn tail") {
		t.Fatalf("manifest: exit %d\n%s", code, out)
	}
}

// A FIFO or a directory where a segment should be is damage to that
// segment: verify reports it, naming the file, and exits 1; the commands
// that do not need it still print, and exit 1 when they had to show an
// older snapshot. Nothing blocks on the FIFO.
func TestNonRegularSegment(t *testing.T) {
	for _, kind := range []string{"fifo", "dir"} {
		t.Run(kind, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "db")
			buildDB(t, dir)
			seg := filepath.Join(dir, segment.FileName(2))
			os.Remove(seg)
			var err error
			if kind == "fifo" {
				err = syscall.Mkfifo(seg, 0o644)
			} else {
				err = os.Mkdir(seg, 0o755)
			}
			if err != nil {
				t.Skipf("%s: %v", kind, err)
			}
			done := make(chan struct{})
			defer close(done)
			go func() {
				select {
				case <-done:
				case <-time.After(time.Minute):
					panic("instadump-inspect blocked on a " + kind)
				}
			}()
			out, errOut, code := runCmd(t, "verify", dir)
			if code != 1 || !strings.Contains(out, "DAMAGED") || !strings.Contains(out, seg) || !strings.Contains(out, "not a regular file") {
				t.Fatalf("verify: exit %d\n%s%s", code, out, errOut)
			}
			for _, args := range [][]string{{"snapshots", dir}, {"manifest", dir}, {"segments", dir}} {
				out, errOut, code := runCmd(t, args...)
				if warned := strings.Contains(errOut, "WARNING"); out == "" || code != 0 && !warned || warned && code != 1 {
					t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
				}
			}
			if _, errOut, code := runCmd(t, "get", dir, "counter"); !strings.Contains(errOut, seg) { // fails, or warns it shows an older snapshot
				t.Fatalf("get of a value in it: exit %d, %s", code, errOut)
			}
		})
	}
}
