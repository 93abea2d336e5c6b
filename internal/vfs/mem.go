package vfs

import (
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"path"
	"path/filepath"
	"sort"
	"sync"
)

// BlockSize is the granularity at which CrashClone keeps or loses unsynced
// writes when CrashOptions.KeepUnsynced is between 0 and 1.
const BlockSize = 4096

// MemFS is a crashable in-memory filesystem.
//
// It tracks, for every file, the contents as of its last Sync and the
// writes since; for every directory, the names as of its last SyncDir.
// CrashClone turns that into the filesystem a reboot after power loss
// could find. The guarantees it models, and so the only ones instadump may
// rely on:
//
//   - data written to a file is durable once Sync on it returns nil;
//   - a name created, renamed or removed is durable once SyncDir on its
//     directory returns nil (for a rename, the directories of both names);
//   - anything else may or may not be there after a crash, block by block,
//     and the last write may be torn at any byte or read back as zeros.
//
// Directories are durable as soon as MkdirAll returns. It is safe for
// concurrent use.
type MemFS struct {
	mu    sync.Mutex
	dirs  map[string]*memDir
	locks map[string]bool
	seq   uint64 // counts writes, to find the last one
}

type memDir struct {
	names   map[string]*inode // as seen now
	durable map[string]*inode // as of the last SyncDir
}

type memOp struct {
	seq      uint64
	off      int64
	data     []byte // nil for a truncate
	truncate bool
	size     int64
}

type inode struct {
	data    []byte
	synced  []byte
	pending []memOp
}

// NewMem returns an empty MemFS holding only the root directory "/" (and
// ".", the same).
func NewMem() *MemFS {
	m := &MemFS{dirs: map[string]*memDir{}, locks: map[string]bool{}}
	m.dirs["."] = newMemDir()
	return m
}

func newMemDir() *memDir {
	return &memDir{names: map[string]*inode{}, durable: map[string]*inode{}}
}

func clean(name string) string {
	p := path.Clean(filepath.ToSlash(name))
	if p == "/" {
		return "."
	}
	if len(p) > 1 && p[0] == '/' {
		p = p[1:]
	}
	return p
}

func split(name string) (dir, base string) {
	p := clean(name)
	return path.Dir(p), path.Base(p)
}

func (m *MemFS) dir(name, op string) (*memDir, string, error) {
	d, b := split(name)
	md := m.dirs[d]
	if md == nil {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return md, b, nil
}

// Create implements FS.
func (m *MemFS) Create(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, b, err := m.dir(name, "create")
	if err != nil {
		return nil, err
	}
	if m.dirs[clean(name)] != nil {
		return nil, &fs.PathError{Op: "create", Path: name, Err: fs.ErrExist}
	}
	ino := d.names[b]
	if ino == nil {
		ino = &inode{}
		d.names[b] = ino
	} else {
		m.truncate(ino, 0)
	}
	return &memFile{m: m, ino: ino, name: name, rw: true}, nil
}

func (m *MemFS) open(name string, rw bool) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, b, err := m.dir(name, "open")
	if err != nil {
		return nil, err
	}
	ino := d.names[b]
	if ino == nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &memFile{m: m, ino: ino, name: name, rw: rw, end: int64(len(ino.data))}, nil
}

// Open implements FS.
func (m *MemFS) Open(name string) (File, error) { return m.open(name, false) }

// OpenRW implements FS.
func (m *MemFS) OpenRW(name string) (File, error) { return m.open(name, true) }

// Rename implements FS.
func (m *MemFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	od, ob, err := m.dir(oldname, "rename")
	if err != nil {
		return err
	}
	nd, nb, err := m.dir(newname, "rename")
	if err != nil {
		return err
	}
	ino := od.names[ob]
	if ino == nil {
		return &fs.PathError{Op: "rename", Path: oldname, Err: fs.ErrNotExist}
	}
	delete(od.names, ob)
	nd.names[nb] = ino
	return nil
}

// Remove implements FS.
func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, b, err := m.dir(name, "remove")
	if err != nil {
		return err
	}
	if d.names[b] == nil {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(d.names, b)
	return nil
}

// List implements FS.
func (m *MemFS) List(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := clean(dir)
	d := m.dirs[p]
	if d == nil {
		return nil, &fs.PathError{Op: "list", Path: dir, Err: fs.ErrNotExist}
	}
	var names []string
	for n := range d.names {
		names = append(names, n)
	}
	for sub := range m.dirs {
		if sub != "." && sub != p && path.Dir(sub) == p {
			names = append(names, path.Base(sub))
		}
	}
	sort.Strings(names)
	return names, nil
}

// MkdirAll implements FS.
func (m *MemFS) MkdirAll(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := clean(dir); p != "." && p != "/"; p = path.Dir(p) {
		if d, b := split(p); m.dirs[d] != nil && m.dirs[d].names[b] != nil {
			return &fs.PathError{Op: "mkdir", Path: p, Err: fmt.Errorf("a file has that name")}
		}
		if m.dirs[p] == nil {
			m.dirs[p] = newMemDir()
		}
	}
	return nil
}

// SyncDir implements FS.
func (m *MemFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.dirs[clean(dir)]
	if d == nil {
		return &fs.PathError{Op: "syncdir", Path: dir, Err: fs.ErrNotExist}
	}
	d.durable = make(map[string]*inode, len(d.names))
	for n, ino := range d.names {
		d.durable[n] = ino
	}
	return nil
}

type memLock struct {
	m    *MemFS
	dir  string
	once sync.Once
}

func (l *memLock) Close() error {
	l.once.Do(func() {
		l.m.mu.Lock()
		delete(l.m.locks, l.dir)
		l.m.mu.Unlock()
	})
	return nil
}

// Lock implements FS. The lock lives in this MemFS only: a CrashClone
// starts with no locks held, as a rebooted machine does.
func (m *MemFS) Lock(dir string) (io.Closer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := clean(dir)
	if m.dirs[p] == nil {
		return nil, &fs.PathError{Op: "lock", Path: dir, Err: fs.ErrNotExist}
	}
	if m.locks[p] {
		return nil, fmt.Errorf("%w: %s", ErrLocked, path.Join(p, LockFile))
	}
	m.locks[p] = true
	return &memLock{m: m, dir: p}, nil
}

func (m *MemFS) truncate(ino *inode, size int64) {
	m.seq++
	ino.data = resize(ino.data, size)
	ino.pending = append(ino.pending, memOp{seq: m.seq, truncate: true, size: size})
}

func resize(b []byte, size int64) []byte {
	if int64(len(b)) >= size {
		return b[:size]
	}
	return append(b, make([]byte, size-int64(len(b)))...)
}

func writeAt(b []byte, p []byte, off int64) []byte {
	if end := off + int64(len(p)); end > int64(len(b)) {
		b = resize(b, end)
	}
	copy(b[off:], p)
	return b
}

type memFile struct {
	m      *MemFS
	ino    *inode
	name   string
	rw     bool
	end    int64
	closed bool
}

func (f *memFile) check(op string, write bool) error {
	if f.closed {
		return &fs.PathError{Op: op, Path: f.name, Err: fs.ErrClosed}
	}
	if write && !f.rw {
		return &fs.PathError{Op: op, Path: f.name, Err: fs.ErrPermission}
	}
	return nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check("read", false); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: fs.ErrInvalid}
	}
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check("write", true); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: fs.ErrInvalid}
	}
	f.m.seq++
	f.ino.data = writeAt(f.ino.data, p, off)
	f.ino.pending = append(f.ino.pending, memOp{seq: f.m.seq, off: off, data: append([]byte(nil), p...)})
	return len(p), nil
}

func (f *memFile) Write(p []byte) (int, error) {
	n, err := f.WriteAt(p, f.end)
	f.end += int64(n)
	return n, err
}

func (f *memFile) Sync() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check("sync", false); err != nil {
		return err
	}
	f.ino.synced = append([]byte(nil), f.ino.data...)
	f.ino.pending = nil
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check("truncate", true); err != nil {
		return err
	}
	if size < 0 {
		return &fs.PathError{Op: "truncate", Path: f.name, Err: fs.ErrInvalid}
	}
	f.m.truncate(f.ino, size)
	f.end = size
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check("stat", false); err != nil {
		return 0, err
	}
	return int64(len(f.ino.data)), nil
}

func (f *memFile) Close() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check("close", false); err != nil {
		return err
	}
	f.closed = true
	return nil
}

// CrashOptions says what of the unsynced state survives a CrashClone.
// The zero value keeps synced data and durable names only.
type CrashOptions struct {
	// KeepUnsynced is the share (0 to 1) of unsynced blocks of
	// BlockSize bytes (and of unsynced truncates) that survive. Blocks
	// are drawn independently, so a file can come back with holes of
	// zeros where later blocks survived and earlier ones did not.
	KeepUnsynced float64
	// Seed drives the draws; the same seed gives the same crash.
	Seed int64
	// TornLast, when positive or zero and Torn is set, keeps exactly the
	// first TornLast bytes of the last write made on the filesystem (if
	// it was not synced), whatever KeepUnsynced draws for it.
	Torn     bool
	TornLast int
	// ZeroLast makes the last write (if not synced) come back as zeros
	// of the same length: the size reached the disk, the data did not.
	ZeroLast bool
}

// CrashClone returns the filesystem as a reboot after power loss now
// could find it, as chosen by opts. The receiver is not changed and can
// go on being used (it is the state of the machine that crashed).
func (m *MemFS) CrashClone(opts CrashOptions) *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	rng := rand.New(rand.NewSource(opts.Seed))
	out := NewMem()
	done := map[*inode]*inode{}
	dirNames := make([]string, 0, len(m.dirs))
	for p := range m.dirs {
		dirNames = append(dirNames, p)
	}
	sort.Strings(dirNames)
	for _, p := range dirNames {
		d := m.dirs[p]
		nd := newMemDir()
		out.dirs[p] = nd
		names := make([]string, 0, len(d.durable))
		for n := range d.durable {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			ino := d.durable[n]
			c := done[ino]
			if c == nil {
				c = m.crashInode(ino, opts, rng)
				done[ino] = c
			}
			nd.names[n] = c
			nd.durable[n] = c
		}
	}
	return out
}

func (m *MemFS) crashInode(ino *inode, opts CrashOptions, rng *rand.Rand) *inode {
	data := append([]byte(nil), ino.synced...)
	for _, op := range ino.pending {
		last := op.seq == m.seq
		switch {
		case op.truncate:
			if rng.Float64() < opts.KeepUnsynced {
				data = resize(data, op.size)
			}
		case last && opts.ZeroLast:
			data = writeAt(data, make([]byte, len(op.data)), op.off)
		case last && opts.Torn:
			n := min(max(opts.TornLast, 0), len(op.data))
			data = writeAt(data, op.data[:n], op.off)
		default:
			for lo := 0; lo < len(op.data); {
				// Cut at BlockSize boundaries of the file.
				hi := min(len(op.data), int((op.off+int64(lo))/BlockSize+1)*BlockSize-int(op.off))
				if rng.Float64() < opts.KeepUnsynced {
					data = writeAt(data, op.data[lo:hi], op.off+int64(lo))
				}
				lo = hi
			}
		}
	}
	return &inode{data: data, synced: append([]byte(nil), data...)}
}
