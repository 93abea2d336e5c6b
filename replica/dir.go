package replica

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// tempPrefix begins the names of the temporary files a directory store
// writes before it renames or links them into place.
const tempPrefix = ReservedPrefix + "tmp-"

// StaleTemp is the age (time since the last write) at which List removes a
// temporary file it finds: one left by a process that crashed while it
// wrote an object. A live write touches its file far more often.
const StaleTemp = 24 * time.Hour

// copyChunk is how much a directory store copies between checks of ctx,
// and the size of its pooled copy buffers.
const copyChunk = 1 << 20

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyChunk); return &b }}

// dirStore is the Store NewDir returns.
type dirStore struct {
	root string // absolute and clean
}

// NewDir returns a Store that keeps its objects as files under the
// directory path, for example a mounted network filesystem: the key
// "a/b/000017.seg" is the file path/a/b/000017.seg. The directory must
// exist (a missing mount point must not quietly become a directory on the
// local disk); subdirectories are made as keys need them.
//
// Put writes a temporary file ".instadump-tmp-*" in the object's
// directory, fsyncs it, renames it over the object's name and fsyncs the
// directory: a reader sees the old object or the whole new one, and once
// Put returns nil the object survives a crash of this machine or of the
// file server. Create does the same but makes the name with link(2), which
// fails atomically if the name exists (renameat2 with RENAME_NOREPLACE
// where the filesystem has no hard links), so one of several racing
// creators wins, on one machine or several sharing the filesystem.
// Delete unlinks the file and fsyncs the directory, and leaves the
// directories, even when empty: removing one could race a Put into it.
//
// A filesystem cannot hold both "a" and "a/b" as files: a key that names
// a directory of other keys, or has an object for a directory in its
// path, fails with an error saying so. Files that are not objects
// (directories, symbolic links, names that are not valid keys) are not
// listed. A temporary file left by a crash is invisible to List, which
// removes it once it is StaleTemp old.
func NewDir(path string) (Store, error) {
	if path == "" {
		return nil, fmt.Errorf("replica: directory store: the path is empty: %w", ErrMisconfigured)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("replica: directory store %s: %w (%w)", path, err, ErrMisconfigured)
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("replica: directory store %s does not exist: create it, or mount its filesystem, first: %w", abs, ErrMisconfigured)
	}
	if err != nil {
		return nil, fmt.Errorf("replica: directory store %s: %w (%w)", abs, err, ErrMisconfigured)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("replica: directory store %s is not a directory: %w", abs, ErrMisconfigured)
	}
	return &dirStore{root: abs}, nil
}

func (d *dirStore) String() string { return "directory " + d.root }

// fail wraps err with the operation, key and location, and classifies the
// errno where one class fits.
func (d *dirStore) fail(op, key, what string, err error) error {
	if what != "" {
		what += ": "
	}
	msg := fmt.Sprintf("replica: %s %q in %s: %s", op, key, d, what)
	var errno syscall.Errno
	var rerr *readError
	if !errors.As(err, &rerr) && errors.As(err, &errno) {
		switch errno {
		case unix.EACCES, unix.EPERM, unix.EROFS:
			return fmt.Errorf("%s%w: check the directory's owner, mode and mount options (%w)", msg, err, ErrMisconfigured)
		case unix.ENOSPC, unix.EDQUOT:
			return fmt.Errorf("%s%w: free some space (%w)", msg, err, ErrUnavailable)
		case unix.ETIMEDOUT, unix.ESTALE, unix.ENOTCONN, unix.EHOSTDOWN, unix.EHOSTUNREACH, unix.ECONNREFUSED, unix.ECONNRESET:
			return fmt.Errorf("%s%w: the filesystem's server may be down (%w)", msg, err, ErrUnavailable)
		}
	}
	return fmt.Errorf("%s%w", msg, err)
}

// path returns the file of key, which CheckKey has passed: no segment is
// "." or "..", so the path stays under the root.
func (d *dirStore) path(key string) string {
	return filepath.Join(d.root, filepath.FromSlash(key))
}

// Put implements Store.
func (d *dirStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return d.write(ctx, "put", key, r, size)
}

// Create implements Store.
func (d *dirStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	return d.write(ctx, "create", key, r, size)
}

func (d *dirStore) write(ctx context.Context, op, key string, r io.Reader, size int64) (err error) {
	if err := CheckKey(key); err != nil {
		return d.fail(op, key, "", err)
	}
	if size < 0 {
		return d.fail(op, key, "", fmt.Errorf("the size %d is negative", size))
	}
	if err := ctx.Err(); err != nil {
		return d.fail(op, key, "", err)
	}
	final := d.path(key)
	parent := filepath.Dir(final)
	if err := d.mkdirs(key, parent); err != nil {
		return d.fail(op, key, "", err)
	}
	f, err := createTemp(parent)
	if err != nil {
		return d.fail(op, key, "creating a temporary file", err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		if tmp != "" {
			os.Remove(tmp)
		}
	}()
	if err := copyN(ctx, f, r, size); err != nil {
		return d.fail(op, key, "", err)
	}
	if err := fdatasync(f); err != nil {
		return d.fail(op, key, "syncing the temporary file", err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return d.fail(op, key, "closing the temporary file", err)
	}
	if err := ctx.Err(); err != nil {
		return d.fail(op, key, "", err)
	}
	if op == "create" {
		renamed, err := linkExclusive(tmp, final)
		if err != nil {
			return d.fail(op, key, "", err)
		}
		// The object has its name; the temporary one goes. If it cannot,
		// it is only a second name of the object, hidden from List, and
		// removed once stale.
		if !renamed {
			os.Remove(tmp)
		}
	} else if err := os.Rename(tmp, final); err != nil {
		if fi, serr := os.Stat(final); serr == nil && fi.IsDir() {
			return d.fail(op, key, "", fmt.Errorf("%s is a directory holding other keys, so it cannot be an object", final))
		}
		return d.fail(op, key, "renaming the temporary file into place", err)
	}
	tmp = ""
	// The new name must be durable before Put says the object is.
	if err := syncDir(parent); err != nil {
		return d.fail(op, key, "syncing the directory", err)
	}
	return nil
}

// createTemp creates a new temporary file in dir. Unlike os.CreateTemp
// (mode 0600) it lets the umask decide who may read the object, as for any
// other file.
func createTemp(dir string) (*os.File, error) {
	for {
		var b [8]byte
		rand.Read(b[:])
		f, err := os.OpenFile(filepath.Join(dir, tempPrefix+hex.EncodeToString(b[:])), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
}

// copyN copies size bytes from r to f, checking ctx between chunks, and
// says whether a failure was the reader's or the file's.
func copyN(ctx context.Context, f *os.File, r io.Reader, size int64) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var done int64
	for done < size {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, rerr := io.ReadFull(r, buf[:min(int64(len(buf)), size-done)])
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return fmt.Errorf("writing the temporary file: %w", err)
			}
			done += int64(n)
		}
		switch {
		case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
			return fmt.Errorf("the reader ended after %d of %d bytes: %w", done, size, io.ErrUnexpectedEOF)
		case rerr != nil:
			return &readError{rerr}
		}
	}
	return nil
}

// readError is a failure of the caller's reader, not of the store.
type readError struct{ err error }

func (e *readError) Error() string { return "reading the object's bytes: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// linkExclusive gives the file tmp the name final, failing with ErrExists
// if final exists. It says whether it renamed tmp (rather than linking
// it, which leaves tmp for the caller to remove).
func linkExclusive(tmp, final string) (renamed bool, err error) {
	err = ignoringEINTR(func() error { return unix.Link(tmp, final) })
	switch {
	case err == nil:
		return false, nil
	case err == unix.EEXIST:
		// Over NFS a link whose reply was lost is retried by the client
		// and then fails with EEXIST although it succeeded: the temporary
		// file then has two links, which only our link can have made.
		var st unix.Stat_t
		if unix.Lstat(tmp, &st) == nil && st.Nlink == 2 {
			return false, nil
		}
		if fi, serr := os.Stat(final); serr == nil && fi.IsDir() {
			return false, fmt.Errorf("%s is a directory holding other keys, so it cannot be an object", final)
		}
		return false, fmt.Errorf("%s exists: %w", final, ErrExists)
	case err == unix.EPERM || err == unix.ENOTSUP || err == unix.ENOSYS || err == unix.EMLINK:
		// A filesystem without hard links may still rename without
		// replacing.
		rerr := ignoringEINTR(func() error {
			return unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, final, unix.RENAME_NOREPLACE)
		})
		switch rerr {
		case nil:
			return true, nil
		case unix.EEXIST:
			return false, fmt.Errorf("%s exists: %w", final, ErrExists)
		case unix.EINVAL, unix.ENOSYS, unix.ENOTSUP:
			return false, fmt.Errorf("the filesystem supports neither link(2) (%v) nor renameat2 with RENAME_NOREPLACE (%v), so it cannot create an object only if absent; use another filesystem: %w", err, rerr, ErrMisconfigured)
		}
		return false, fmt.Errorf("renaming the temporary file into place: %w", rerr)
	}
	return false, fmt.Errorf("linking the temporary file into place: %w", err)
}

// mkdirs makes dir, the directory of key, and the directories above it up
// to the root, then fsyncs the parent of each one it made, so that the
// path to the object is as durable as the object.
func (d *dirStore) mkdirs(key, dir string) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	rel, err := filepath.Rel(d.root, dir)
	if err != nil {
		return err
	}
	var made []string
	p := d.root
	for seg := range strings.SplitSeq(rel, string(filepath.Separator)) {
		p = filepath.Join(p, seg)
		err := os.Mkdir(p, 0o755)
		switch {
		case err == nil:
			made = append(made, p)
		case errors.Is(err, fs.ErrExist):
			if fi, serr := os.Stat(p); serr == nil && !fi.IsDir() {
				return fmt.Errorf("%s is an object, so it cannot also be a directory of keys", p)
			}
		case errors.Is(err, syscall.ENOTDIR):
			return fmt.Errorf("%s is an object, so it cannot also be a directory of keys", filepath.Dir(p))
		default:
			return fmt.Errorf("making the directory for %q: %w", key, err)
		}
	}
	for _, m := range made {
		if err := syncDir(filepath.Dir(m)); err != nil {
			return fmt.Errorf("syncing the directory above %s: %w", m, err)
		}
	}
	return nil
}

// Get implements Store.
func (d *dirStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := CheckKey(key); err != nil {
		return nil, d.fail("get", key, "", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, d.fail("get", key, "", err)
	}
	f, err := os.Open(d.path(key))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, d.fail("get", key, "", ErrNotFound)
	}
	if err != nil {
		return nil, d.fail("get", key, "", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, d.fail("get", key, "", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, d.fail("get", key, "", ErrNotFound)
	}
	return &fileReader{ctx: ctx, f: f}, nil
}

// fileReader is an object being read: a file whose reads stop once ctx is
// done.
type fileReader struct {
	ctx context.Context
	f   *os.File
}

func (r *fileReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.f.Read(p)
}

func (r *fileReader) Close() error { return r.f.Close() }

// List implements Store.
func (d *dirStore) List(ctx context.Context, prefix string) ([]Object, error) {
	if err := CheckPrefix(prefix); err != nil {
		return nil, d.fail("list", prefix, "", err)
	}
	// Walk from the directory the prefix names in full; its last segment
	// only filters the names there.
	i := strings.LastIndexByte(prefix, '/')
	base, first := prefix[:i+1], prefix[i+1:]
	objs := []Object{}
	if err := d.walk(ctx, filepath.Join(d.root, filepath.FromSlash(base)), base, first, &objs); err != nil {
		return nil, d.fail("list", prefix, "", err)
	}
	slices.SortFunc(objs, func(a, b Object) int { return strings.Compare(a.Key, b.Key) })
	return objs, nil
}

// walk adds to objs the objects under dir, whose keys begin with keyBase,
// taking only the names that begin with first.
func (d *dirStore) walk(ctx context.Context, dir, keyBase, first string, objs *[]Object) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil // nothing there; or removed meanwhile
	}
	if err != nil {
		return fmt.Errorf("reading the directory %s: %w", dir, err)
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ReservedPrefix) {
			removeIfStale(filepath.Join(dir, name), e)
			continue
		}
		if !strings.HasPrefix(name, first) {
			continue
		}
		key := keyBase + name
		switch {
		case e.IsDir():
			if err := d.walk(ctx, filepath.Join(dir, name), key+"/", "", objs); err != nil {
				return err
			}
		case e.Type().IsRegular():
			if CheckKey(key) != nil {
				continue // not a file this store wrote
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted meanwhile
			}
			if err != nil {
				return fmt.Errorf("reading the size of %s: %w", filepath.Join(dir, name), err)
			}
			*objs = append(*objs, Object{Key: key, Size: fi.Size()})
		}
	}
	return nil
}

// removeIfStale removes a temporary file that has not been written for
// StaleTemp: its writer is gone. Failure is harmless (a read-only mount,
// a race with another remover), so it is ignored.
func removeIfStale(path string, e fs.DirEntry) {
	if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), tempPrefix) {
		return
	}
	if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > StaleTemp {
		os.Remove(path)
	}
}

// Delete implements Store.
func (d *dirStore) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return d.fail("delete", key, "", err)
	}
	if err := ctx.Err(); err != nil {
		return d.fail("delete", key, "", err)
	}
	p := d.path(key)
	err := ignoringEINTR(func() error { return unix.Unlink(p) })
	switch err {
	case nil:
	case unix.ENOENT, unix.ENOTDIR, unix.EISDIR:
		return nil // no such object (EISDIR: a directory of other keys)
	default:
		return d.fail("delete", key, "", &os.PathError{Op: "unlink", Path: p, Err: err})
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return d.fail("delete", key, "syncing the directory", err)
	}
	return nil
}

// fdatasync makes f's data and size durable (all an object needs).
func fdatasync(f *os.File) error {
	err := ignoringEINTR(func() error { return unix.Fdatasync(int(f.Fd())) })
	if err != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
	}
	return nil
}

// syncDir fsyncs a directory, making the names in it durable. Some network
// and FUSE filesystems cannot fsync a directory at all (EINVAL, ENOTSUP);
// there, as PostgreSQL does, it is skipped: such a filesystem makes its
// names durable on its own terms or not at all.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	err = ignoringEINTR(func() error { return unix.Fsync(int(f.Fd())) })
	switch err {
	case nil, unix.EINVAL, unix.ENOTSUP:
		return nil
	}
	return &os.PathError{Op: "fsync", Path: dir, Err: err}
}

func ignoringEINTR(call func() error) error {
	for {
		err := call()
		if err != unix.EINTR {
			return err
		}
	}
}
