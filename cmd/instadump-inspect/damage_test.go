package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instadump/instadump/manifest"
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
// with a warning, showing the snapshot before it.
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
	if code != 0 || !strings.Contains(errOut, "WARNING") || strings.Contains(out, "\n3 ") {
		t.Fatalf("snapshots: exit %d\n%s\n%s", code, out, errOut)
	}
	out, _, code = runCmd(t, "manifest", dir)
	if code != 0 || !strings.Contains(out, "DAMAGED last record") || strings.Contains(out, "torn tail") {
		t.Fatalf("manifest: exit %d\n%s", code, out)
	}
}
