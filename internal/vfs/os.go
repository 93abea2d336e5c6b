package vfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"golang.org/x/sys/unix"
)

// OS is the real filesystem.
var OS FS = osFS{}

type osFS struct{}

type osFile struct {
	*os.File
	end int64 // where the next Write goes
}

func (f *osFile) Write(p []byte) (int, error) {
	n, err := f.File.WriteAt(p, f.end)
	f.end += int64(n)
	return n, err
}

// Sync uses fdatasync: it makes the data and the size durable, which is
// all instadump needs (it never relies on timestamps or permissions).
func (f *osFile) Sync() error {
	for {
		err := unix.Fdatasync(int(f.File.Fd()))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "fdatasync", Path: f.File.Name(), Err: err}
		}
		return nil
	}
}

func (f *osFile) Size() (int64, error) {
	fi, err := f.File.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// ErrNotRegular reports a name that is not a regular file: a FIFO, a
// device, a directory. Opening one could block forever (a FIFO with no
// writer) or read what no one wrote.
var ErrNotRegular = errors.New("not a regular file")

// openRegular opens name with flag, never blocking on a FIFO or device,
// and returns it only if it is a regular file.
func openRegular(name string, flag int, perm uint32) (*os.File, error) {
	fd, err := unix.Open(name, flag|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, perm)
	for err == unix.EINTR {
		fd, err = unix.Open(name, flag|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, perm)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "stat", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, &os.PathError{Op: "open", Path: name, Err: ErrNotRegular}
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

func (osFS) Create(name string) (File, error) {
	f, err := openRegular(name, unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return &osFile{File: f}, nil
}

func (osFS) Open(name string) (File, error) {
	f, err := openRegular(name, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	return &osFile{File: f}, nil
}

func (osFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }
func (osFS) Remove(name string) error             { return os.Remove(name) }
func (osFS) MkdirAll(dir string) error            { return os.MkdirAll(dir, 0o755) }

func (osFS) List(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	sort.Strings(names)
	return names, nil
}

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// held is the lock files this process holds, by device and inode: flock
// refuses a second lock by the same process as it refuses another
// process's, and the error should say which it is.
var held = struct {
	sync.Mutex
	m map[fileID]bool
}{m: map[fileID]bool{}}

type fileID struct{ dev, ino uint64 }

type osLock struct {
	f  *os.File
	id fileID
}

func (l osLock) Close() error {
	held.Lock()
	defer held.Unlock()
	delete(held.m, l.id)
	// Closing the descriptor releases the flock: under held's lock, so a
	// Lock of the same file in this process, told it is not held here,
	// never meets the flock still held.
	return l.f.Close()
}

func (osFS) Lock(dir string) (io.Closer, error) {
	name := filepath.Join(dir, LockFile)
	f, err := openRegular(name, unix.O_RDWR|unix.O_CREAT, 0o644)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "fstat", Path: name, Err: err}
	}
	id := fileID{uint64(st.Dev), uint64(st.Ino)}
	held.Lock()
	defer held.Unlock()
	if held.m[id] {
		f.Close()
		return nil, fmt.Errorf("%w: %s is held by another open DB in this process: Close that DB first, or open this one read-only", ErrLocked, name)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		if err == unix.EWOULDBLOCK {
			return nil, fmt.Errorf("%w: %s is held by another process: stop that process, or open this DB read-only", ErrLocked, name)
		}
		return nil, &os.PathError{Op: "flock", Path: name, Err: err}
	}
	held.m[id] = true
	return osLock{f, id}, nil
}
