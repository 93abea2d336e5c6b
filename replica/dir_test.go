package replica_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/instadump/instadump/replica"
	"github.com/instadump/instadump/replica/replicatest"
)

func newDir(t *testing.T) (replica.Store, string) {
	t.Helper()
	root := t.TempDir()
	s, err := replica.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

// temps returns the temporary files under root.
func temps(t *testing.T, root string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), replica.ReservedPrefix) {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestDir(t *testing.T) {
	s, root := newDir(t)
	replicatest.TestStore(t, s)
	// Failed, canceled and racing writes left no temporary file behind.
	if tmp := temps(t, root); len(tmp) > 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
}

func TestNewDirErrors(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"", "empty"},
		{filepath.Join(root, "missing"), "does not exist"},
		{file, "not a directory"},
	} {
		_, err := replica.NewDir(tc.path)
		if !errors.Is(err, replica.ErrMisconfigured) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewDir(%q): %v, want ErrMisconfigured saying %q", tc.path, err, tc.want)
		}
	}
}

// A file cannot be both an object and a directory of other objects: such
// keys fail with a clear error, and never with ErrExists or ErrNotFound
// for the wrong reason.
func TestDirKeyIsDirectory(t *testing.T) {
	s, _ := newDir(t)
	ctx := t.Context()
	put := func(key string) error { return s.Put(ctx, key, strings.NewReader("x"), 1) }
	if err := put("a/b"); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{put("a"), s.Create(ctx, "a", strings.NewReader("x"), 1)} {
		if err == nil || errors.Is(err, replica.ErrExists) || !strings.Contains(err.Error(), "directory holding other keys") {
			t.Errorf("writing the key a over the directory a/: %v", err)
		}
	}
	for _, err := range []error{put("a/b/c"), s.Create(ctx, "a/b/c", strings.NewReader("x"), 1)} {
		if err == nil || !strings.Contains(err.Error(), "cannot also be a directory") {
			t.Errorf("writing a/b/c under the object a/b: %v", err)
		}
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Errorf("Delete of a directory's key: %v", err)
	}
	objs, err := s.List(ctx, "")
	if err != nil || len(objs) != 1 || objs[0].Key != "a/b" {
		t.Errorf("List = %v, %v; want only a/b", objs, err)
	}
}

// List hides temporary files, and removes those a crashed writer left
// once they are StaleTemp old.
func TestDirStaleTemp(t *testing.T) {
	s, root := newDir(t)
	ctx := t.Context()
	if err := s.Put(ctx, "d/obj", strings.NewReader("abc"), 3); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(root, "d", replica.ReservedPrefix+"tmp-123")
	fresh := filepath.Join(root, "d", replica.ReservedPrefix+"tmp-456")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-replica.StaleTemp - time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	objs, err := s.List(ctx, "")
	if err != nil || len(objs) != 1 || objs[0] != (replica.Object{Key: "d/obj", Size: 3}) {
		t.Fatalf("List = %v, %v; want only d/obj", objs, err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stale temporary file is still there: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("the fresh temporary file is gone: %v", err)
	}
}

// Files that are not objects are not listed.
func TestDirListSkipsOthers(t *testing.T) {
	s, root := newDir(t)
	if err := os.MkdirAll(filepath.Join(root, "x", "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "x", "back\\slash"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "x", "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "x", "ok"), []byte("12"), 0o644); err != nil {
		t.Fatal(err)
	}
	objs, err := s.List(t.Context(), "x/")
	if err != nil || len(objs) != 1 || objs[0] != (replica.Object{Key: "x/ok", Size: 2}) {
		t.Fatalf("List = %v, %v; want only x/ok", objs, err)
	}
}

func TestDirString(t *testing.T) {
	s, root := newDir(t)
	if got := s.String(); got != "directory "+root {
		t.Errorf("String() = %q", got)
	}
	err := s.Create(t.Context(), "k", bytes.NewReader(nil), 0)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Create(t.Context(), "k", bytes.NewReader(nil), 0)
	if !errors.Is(err, replica.ErrExists) || !strings.Contains(err.Error(), root) || !strings.Contains(err.Error(), `"k"`) {
		t.Errorf("Create of a taken key: %v; want ErrExists naming the key and directory", err)
	}
}

// A FaultStore with no faults passes the conformance tests over a
// directory too.
func TestDirFaultStore(t *testing.T) {
	s, _ := newDir(t)
	replicatest.TestStore(t, replicatest.NewFaultStore(s))
}

// Objects get the mode any new file gets (0644 less the umask), not the
// 0600 of os.CreateTemp: a restore may run as another user.
func TestDirFileMode(t *testing.T) {
	old := unix.Umask(0o022)
	defer unix.Umask(old)
	s, root := newDir(t)
	for i, write := range []func() error{
		func() error { return s.Put(t.Context(), "p", strings.NewReader("x"), 1) },
		func() error { return s.Create(t.Context(), "c", strings.NewReader("x"), 1) },
	} {
		if err := write(); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(root, []string{"p", "c"}[i]))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s has mode %v, want 0644", fi.Name(), fi.Mode().Perm())
		}
	}
}
