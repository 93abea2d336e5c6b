package fuzz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/instadump/instadump/engine"
	"github.com/instadump/instadump/internal/testdisk"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/segment"
)

// logCounter counts log messages containing given words.
type logCounter struct {
	compacting, rolloverFailed atomic.Int64
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	switch {
	case strings.Contains(r.Message, "compacting"):
		l.compacting.Add(1)
	case strings.Contains(r.Message, "rollover failed"):
		l.rolloverFailed.Add(1)
	}
	return nil
}
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounter) WithGroup(string) slog.Handler      { return l }

// A real full disk (a 1 MiB tmpfs, root only). A dry run finds the save
// that compacts and the save after which the manifest rolls over; then,
// for each, the disk is filled to leave every amount of room from none to
// more than that save needs, so that it fails at each of its writes in
// turn. Every failing call returns ENOSPC, the last acknowledged snapshot
// stays loadable, and once there is room again saves work.
func TestCrashFullDisk(t *testing.T) {
	mnt := testdisk.Tmpfs(t, "1m")
	dir := filepath.Join(mnt, "db")

	// The dry run.
	logs := &logCounter{}
	w := fullDiskEnv(t, dir, logs)
	compactAt, rollAt := 0, 0
	for i := 1; i <= 30 && (compactAt == 0 || rollAt == 0); i++ {
		before, man := logs.compacting.Load(), manifestName(t, dir)
		if err := w.commit(fullDiskChange(i)); err != nil {
			t.Fatal(err)
		}
		if compactAt == 0 && logs.compacting.Load() > before {
			compactAt = i
		}
		if rollAt == 0 && manifestName(t, dir) != man {
			rollAt = i
		}
	}
	w.e.Close()
	if compactAt == 0 || rollAt == 0 {
		t.Fatalf("the workload neither compacts (%d) nor rolls over (%d)", compactAt, rollAt)
	}
	for _, target := range []struct {
		what string
		at   int
	}{{"compaction", compactAt}, {"rollover", rollAt}} {
		failed := 0
		for free := int64(0); free <= 100<<10; free += 1 << 10 {
			logs := &logCounter{}
			w := fullDiskEnv(t, dir, logs)
			for i := 1; i < target.at; i++ {
				if err := w.commit(fullDiskChange(i)); err != nil {
					t.Fatal(err)
				}
			}
			filler := fill(t, mnt, free)
			err := w.commit(fullDiskChange(target.at))
			if err != nil && !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("%s, %d bytes free: the save failed with %v, not ENOSPC", target.what, free, err)
			}
			// Full during the compaction: its save fails. During the
			// rollover after the commit: the rollover fails, logged (unless
			// the commit's garbage collection made room for it first).
			if (target.what == "compaction" && err != nil) || logs.rolloverFailed.Load() > 0 {
				failed++
			}
			w.close()
			// Still full: recovery, which always rolls the manifest over,
			// may fail, with ENOSPC, and change nothing.
			if err := w.openAt(dir); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("%s, %d bytes free: reopening a full disk: %v", target.what, free, err)
				}
				if target.what == "rollover" {
					failed++
				}
			}
			w.close()
			os.Remove(filler)
			if err := w.openAt(dir); err != nil {
				t.Fatalf("%s, %d bytes free: reopen with room again: %v", target.what, free, err)
			}
			if err := checkModel(w.e, w.m); err != nil {
				t.Fatalf("%s, %d bytes free: %v", target.what, free, err)
			}
			if err := w.commit(map[string]string{"room": "again"}); err != nil {
				t.Fatalf("%s, %d bytes free: save with room again: %v", target.what, free, err)
			}
			w.e.Close()
			figures.injected.Add(1)
		}
		t.Logf("the disk was full during the %s in %d of the runs", target.what, failed)
		if failed == 0 {
			t.Fatalf("the sweep never filled the disk during the %s", target.what)
		}
	}
}

// fullDiskEnv starts a fresh DB in dir holding ten 8 KB states and 20
// small ones.
func fullDiskEnv(t *testing.T, dir string, logs *logCounter) *env {
	os.RemoveAll(dir)
	w := &env{fs: vfs.OS, opts: engine.Options{Retain: 2, Level: segment.LevelNone, ManifestLimit: 1, Logger: slog.New(logs)}, m: newModel()}
	if err := w.openAt(dir); err != nil {
		t.Fatal(err)
	}
	base := map[string]string{}
	for k := 0; k < 10; k++ {
		base[fmt.Sprint("s", k)] = val("s", k, 8_000)
	}
	for k := 0; k < 20; k++ { // never changed: the first segment stays partly live
		base[fmt.Sprint("small", k)] = val("x", k, 10)
	}
	if err := w.commit(base); err != nil {
		t.Fatal(err)
	}
	return w
}

// fullDiskChange is save i: six of the ten states, a window that moves
// by three, so that segments end up more than half dead and compaction
// comes.
func fullDiskChange(i int) map[string]string {
	ch := map[string]string{}
	for k := 0; k < 6; k++ {
		name := fmt.Sprint("s", (3*i+k)%10)
		ch[name] = val(name, 100+i, 8_000)
	}
	return ch
}

func manifestName(t *testing.T, dir string) string {
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.HasPrefix(n.Name(), "MANIFEST-") {
			return n.Name()
		}
	}
	return ""
}

// fill writes a file in dir that leaves about free bytes on its filesystem.
func fill(t *testing.T, dir string, free int64) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	avail := int64(st.Bavail) * st.Bsize
	name := filepath.Join(dir, "filler")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n := avail - free; n > 0 {
		f.Write(make([]byte, n)) // a short write on a full disk is fine
	}
	return name
}
