package vfs

import (
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// BlockSize is the granularity at which CrashClone keeps or loses unsynced
// writes when CrashOptions.KeepUnsynced is between 0 and 1.
const BlockSize = 4096

// MemFS is a crashable in-memory filesystem.
//
// It tracks, for every file, the contents as of its last Sync and the
// writes since; for every directory, the names as of its last SyncDir;
// and, in order, every name operation (create, mkdir, rename, remove) not
// yet made durable. CrashClone turns that into the filesystem a reboot
// after power loss could find. The guarantees it models, and so the only
// ones instadump may rely on:
//
//   - data written to a file is durable once Sync on it returns nil;
//   - a name created (by Create or MkdirAll), renamed or removed is
//     durable once SyncDir on its directory returns nil. A rename is
//     durable once either directory is synced: it is one atomic
//     operation, never half done, as journaling filesystems make it;
//   - a directory is durable only once its own name is: losing it loses
//     everything in it;
//   - anything else may or may not be there after a crash: unsynced
//     writes survive or vanish block by block, and any of them may be torn
//     at any byte or read back as zeros; unsynced name operations survive
//     or vanish one by one, each whole, the survivors applied in the order
//     they were made (an operation on a name survives only with the
//     earlier ones on that name, so a renamed file is found under its old
//     name or its new one, never both or neither);
//   - a Sync that fails (through ErrorFS) settles the file's unsynced
//     writes at once, kept or lost as SetFailedSync says: they are no
//     longer pending, so a later Sync that succeeds does not bring back
//     what was lost, though reads still see it until a crash (Linux marks
//     the pages clean after a writeback error).
//
// It is safe for concurrent use.
type MemFS struct {
	mu      sync.Mutex
	root    *node
	locks   map[string]bool
	seq     uint64         // counts writes, to find the last one
	names   NameLog[*node] // unsynced name operations, oldest first
	failed  CrashOptions
	failRng *rand.Rand
}

// node is a file or a directory.
type node struct {
	dir bool
	// A directory's names as seen now, and as of the name operations made
	// durable.
	names, durable map[string]*node
	// A file's data as seen now (the page cache), as durable, and the
	// writes and truncates since.
	data, synced []byte
	pending      []memOp
}

type memOp struct {
	seq      uint64
	off      int64
	data     []byte // nil for a truncate
	truncate bool
	size     int64
}

// nameEffect is a NameEffect of a MemFS.
type nameEffect = NameEffect[*node]

// NewMem returns an empty MemFS holding only the root directory "/" (and
// ".", the same).
func NewMem() *MemFS {
	return &MemFS{root: newDir(), locks: map[string]bool{}}
}

func newDir() *node {
	return &node{dir: true, names: map[string]*node{}, durable: map[string]*node{}}
}

// SetFailedSync says how a Sync that ErrorFS fails settles the file's
// unsynced writes: as CrashClone with opts would (the zero value loses
// them all). Each failure draws anew from opts.Seed's sequence.
func (m *MemFS) SetFailedSync(opts CrashOptions) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failed, m.failRng = opts, rand.New(rand.NewSource(opts.Seed))
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

// lookup returns the node at p (a cleaned path), or nil.
func (m *MemFS) lookup(p string) *node {
	n := m.root
	if p == "." {
		return n
	}
	for _, c := range strings.Split(p, "/") {
		if !n.dir {
			return nil
		}
		if n = n.names[c]; n == nil {
			return nil
		}
	}
	return n
}

// find returns the node at name, a directory if dir is set, else a file;
// op names the call in its error.
func (m *MemFS) find(name, op string, dir bool) (*node, error) {
	n := m.lookup(clean(name))
	switch {
	case n == nil:
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	case n.dir && !dir:
		return nil, &fs.PathError{Op: op, Path: name, Err: syscall.EISDIR}
	case !n.dir && dir:
		return nil, &fs.PathError{Op: op, Path: name, Err: syscall.ENOTDIR}
	}
	return n, nil
}

// parent returns the directory holding name, and name's base.
func (m *MemFS) parent(name, op string) (*node, string, error) {
	p := clean(name)
	if p == "." {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	d := m.lookup(path.Dir(p))
	if d == nil || !d.dir {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return d, path.Base(p), nil
}

// UnsyncedNames describes the name operations not yet durable, oldest
// first ("create db/000001.seg", "rename db/CURRENT.tmp db/CURRENT").
func (m *MemFS) UnsyncedNames() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.names.Whats()
}

// Create implements FS.
func (m *MemFS) Create(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, b, err := m.parent(name, "create")
	if err != nil {
		return nil, err
	}
	ino := d.names[b]
	switch {
	case ino == nil:
		ino = &node{}
		d.names[b] = ino
		m.names.Add("create "+name, nameEffect{Dir: d, Name: b, To: ino})
	case ino.dir:
		return nil, &fs.PathError{Op: "create", Path: name, Err: syscall.EISDIR}
	default:
		m.truncate(ino, 0)
	}
	return &memFile{m: m, ino: ino, name: name, rw: true}, nil
}

func (m *MemFS) open(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, err := m.find(name, "open", false)
	if err != nil {
		return nil, err
	}
	return &memFile{m: m, ino: ino, name: name, end: int64(len(ino.data))}, nil
}

// Open implements FS.
func (m *MemFS) Open(name string) (File, error) { return m.open(name) }

// Rename implements FS. Directories can be renamed too, but not over an
// existing name, nor into themselves.
func (m *MemFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	od, ob, err := m.parent(oldname, "rename")
	if err != nil {
		return err
	}
	nd, nb, err := m.parent(newname, "rename")
	if err != nil {
		return err
	}
	ino := od.names[ob]
	if ino == nil {
		return &fs.PathError{Op: "rename", Path: oldname, Err: fs.ErrNotExist}
	}
	if od == nd && ob == nb {
		return nil
	}
	if old := nd.names[nb]; old != nil && (old.dir || ino.dir) {
		return &fs.PathError{Op: "rename", Path: newname, Err: fs.ErrExist}
	}
	if o, n := clean(oldname), clean(newname); ino.dir && strings.HasPrefix(n, o+"/") {
		return &fs.PathError{Op: "rename", Path: newname, Err: fs.ErrInvalid}
	}
	delete(od.names, ob)
	nd.names[nb] = ino
	m.names.Add("rename "+oldname+" "+newname,
		nameEffect{Dir: od, Name: ob, Was: ino},
		nameEffect{Dir: nd, Name: nb, To: ino})
	return nil
}

// Remove implements FS. A directory must be empty.
func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, b, err := m.parent(name, "remove")
	if err != nil {
		return err
	}
	ino := d.names[b]
	switch {
	case ino == nil:
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	case ino.dir && len(ino.names) > 0:
		return &fs.PathError{Op: "remove", Path: name, Err: syscall.ENOTEMPTY}
	}
	delete(d.names, b)
	m.names.Add("remove "+name, nameEffect{Dir: d, Name: b, Was: ino})
	return nil
}

// List implements FS.
func (m *MemFS) List(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, err := m.find(dir, "list", true)
	if err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(d.names)), nil
}

// MkdirAll implements FS. Each directory it creates is a name in its
// parent, durable only after SyncDir of the parent (see MkdirAllDurable).
func (m *MemFS) MkdirAll(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := clean(dir)
	if p == "." {
		return nil
	}
	d, sofar := m.root, ""
	for _, c := range strings.Split(p, "/") {
		sofar = path.Join(sofar, c)
		n := d.names[c]
		switch {
		case n == nil:
			n = newDir()
			d.names[c] = n
			m.names.Add("mkdir "+sofar, nameEffect{Dir: d, Name: c, To: n})
		case !n.dir:
			return &fs.PathError{Op: "mkdir", Path: dir, Err: fmt.Errorf("a file has that name")}
		}
		d = n
	}
	return nil
}

// SyncDir implements FS. It makes durable every unsynced name operation
// in dir, and every earlier one on a name that those operations touch
// (and so on back), so that the durable names of each directory entry are
// always a prefix of the operations made on it.
func (m *MemFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.lookup(clean(dir))
	if d == nil || !d.dir {
		return &fs.PathError{Op: "syncdir", Path: dir, Err: fs.ErrNotExist}
	}
	durable, rest := m.names.Sync(d)
	for _, op := range durable {
		for _, e := range op.Effects {
			e.Apply(e.Dir.durable)
		}
	}
	m.names = rest
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
	if d := m.lookup(p); d == nil || !d.dir {
		return nil, &fs.PathError{Op: "lock", Path: dir, Err: fs.ErrNotExist}
	}
	if m.locks[p] {
		return nil, fmt.Errorf("%w: %s is held by another open DB on this MemFS: Close that DB first, or open this one read-only", ErrLocked, path.Join(p, LockFile))
	}
	m.locks[p] = true
	return &memLock{m: m, dir: p}, nil
}

func (m *MemFS) truncate(ino *node, size int64) {
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

func (op memOp) apply(b []byte) []byte {
	if op.truncate {
		return resize(b, op.size)
	}
	return writeAt(b, op.data, op.off)
}

type memFile struct {
	m      *MemFS
	ino    *node
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

// Write appends p at the end of the file as this handle knows it.
func (f *memFile) Write(p []byte) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check("write", true); err != nil {
		return 0, err
	}
	f.m.seq++
	f.ino.data = writeAt(f.ino.data, p, f.end)
	f.ino.pending = append(f.ino.pending, memOp{seq: f.m.seq, off: f.end, data: append([]byte(nil), p...)})
	f.end += int64(len(p))
	return len(p), nil
}

// Sync makes the writes since the last Sync durable. Not a copy of what
// reads see: after a failed Sync they may differ for good.
func (f *memFile) Sync() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check("sync", false); err != nil {
		return err
	}
	for _, op := range f.ino.pending {
		f.ino.synced = op.apply(f.ino.synced)
	}
	f.ino.pending = nil
	return nil
}

// syncFailed settles the unsynced writes as SetFailedSync says.
func (f *memFile) syncFailed() {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if f.m.failRng == nil {
		f.m.failRng = rand.New(rand.NewSource(f.m.failed.Seed))
	}
	f.ino.synced = f.m.settle(f.ino, f.m.failed, f.m.failRng)
	f.ino.pending = nil
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
// The zero value keeps synced data and durable names only. Every draw
// comes from Seed: the same options give the same crash.
type CrashOptions struct {
	// KeepUnsynced is the share (0 to 1) of unsynced blocks of
	// BlockSize bytes (and of unsynced truncates) that survive. Blocks
	// are drawn independently, so a file can come back with holes of
	// zeros where later blocks survived and earlier ones did not.
	KeepUnsynced float64
	// KeepNames is the share (0 to 1) of unsynced name operations
	// (create, mkdir, rename, remove) that survive, each drawn on its
	// own and applied whole, in the order they were made. An operation
	// survives only if the earlier unsynced ones on the same names did:
	// the survivors on each name are a prefix of its operations.
	KeepNames float64
	// Tear is the share (0 to 1) of unsynced writes that are torn: such
	// a write keeps exactly its first n bytes, n drawn from 0 to its
	// length, whatever KeepUnsynced draws for it.
	Tear float64
	// Zero is the share (0 to 1) of unsynced writes that come back as
	// zeros of the same length: the size reached the disk, the data did
	// not. Tear is drawn first.
	Zero float64
	// Seed drives the draws; the same seed gives the same crash.
	Seed int64
	// TornLast, when positive or zero and Torn is set, keeps exactly the
	// first TornLast bytes of the last write made on the filesystem (if
	// it was not synced), whatever the other options draw for it.
	Torn     bool
	TornLast int
	// ZeroLast makes the last write (if not synced) come back as zeros
	// of the same length.
	ZeroLast bool
}

// CrashClone returns the filesystem as a reboot after power loss now
// could find it, as chosen by opts. The receiver is not changed and can
// go on being used (it is the state of the machine that crashed).
func (m *MemFS) CrashClone(opts CrashOptions) *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	rng := rand.New(rand.NewSource(opts.Seed))
	// The names: the durable ones, then the surviving operations.
	view := map[*node]map[string]*node{}
	names := func(d *node) map[string]*node {
		v, ok := view[d]
		if !ok {
			v = maps.Clone(d.durable)
			view[d] = v
		}
		return v
	}
	// An operation survives only with the earlier ones on the same
	// names: a rename never leaves its inode under both names or none.
	for _, op := range m.names.Survivors(func() bool { return rng.Float64() < opts.KeepNames }) {
		for _, e := range op.Effects {
			e.Apply(names(e.Dir))
		}
	}
	// Only what the root reaches survives.
	clones := map[*node]*node{}
	var clone func(n *node) *node
	clone = func(n *node) *node {
		if c := clones[n]; c != nil {
			return c
		}
		if !n.dir {
			data := m.settle(n, opts, rng)
			c := &node{data: data, synced: append([]byte(nil), data...)}
			clones[n] = c
			return c
		}
		c := newDir()
		clones[n] = c
		v := names(n)
		for _, name := range slices.Sorted(maps.Keys(v)) {
			c.names[name] = clone(v[name])
		}
		c.durable = maps.Clone(c.names)
		return c
	}
	out := NewMem()
	out.root = clone(m.root)
	return out
}

// settle returns a file's durable data after its unsynced writes are
// kept, torn or lost as opts and rng draw.
func (m *MemFS) settle(ino *node, opts CrashOptions, rng *rand.Rand) []byte {
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
		case opts.Tear > 0 && rng.Float64() < opts.Tear:
			data = writeAt(data, op.data[:rng.Intn(len(op.data)+1)], op.off)
		case opts.Zero > 0 && rng.Float64() < opts.Zero:
			data = writeAt(data, make([]byte, len(op.data)), op.off)
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
	return data
}
