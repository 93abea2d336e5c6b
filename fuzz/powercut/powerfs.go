// Package powercut is a FUSE filesystem that loses, at a power cut,
// everything POSIX allows it to lose, and the test that runs instadump on
// it through the real kernel (vfs.OS, a child process, kill).
//
// The filesystem passes through to a backing directory, which holds only
// what is durable: root/ is the durable tree, limbo/ holds files and
// directories whose names are not durable yet (by inode number). Unsynced
// file data and unsynced name operations (create, mkdir, rename, unlink,
// rmdir) live in memory, and reads are served from that in-memory view:
//
//   - fsync or fdatasync of a file writes its unsynced data to its backing
//     file;
//   - fsync of a directory makes durable its unsynced name operations, and
//     the earlier ones on the same names (so that each name's durable
//     operations are a prefix of its operations; a rename is durable whole
//     once either directory is synced);
//   - at Cut, every operation fails with EIO from then on; Restart then
//     keeps what CutOptions draws of the rest (nothing, by default; or a
//     seeded subset of the name operations, in order, and of the unsynced
//     writes: blocks kept or lost, writes torn at any byte), drops the rest
//     with the memory, unmounts and mounts the backing tree again.
//
// Every open asks for direct I/O and never for passthrough, so that every
// read and write reaches the daemon (the kernel keeps no page cache of
// its own for these files); file locks stay in the kernel.
package powercut

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/instadump/instadump/internal/vfs"
)

// BlockSize is the grain at which a cut keeps or loses unsynced writes.
const BlockSize = 4096

// CutOptions says what of the unsynced state a power cut keeps. The zero
// value keeps nothing.
type CutOptions struct {
	KeepNames    float64 // share of unsynced name operations kept
	KeepUnsynced float64 // share of unsynced blocks (and truncates) kept
	Tear         float64 // share of unsynced writes torn at a random byte
	Seed         int64
}

type node struct {
	dir   bool
	names map[string]uint64 // a directory's names, as seen now
	// A file's unsynced writes, and its contents as seen now while it has
	// any (nil: its backing file is all there is).
	pending []op
	live    []byte
}

type op struct {
	off      int64
	data     []byte
	truncate bool
	size     int64
}

// effect is a vfs.NameEffect of the FS, its nodes by number.
type effect = vfs.NameEffect[uint64]

type loc struct {
	dir  uint64
	name string
}

// FS is the filesystem: a fuse.RawFileSystem.
type FS struct {
	fuse.RawFileSystem

	mu      sync.Mutex
	back    string
	nodes   map[uint64]*node
	next    uint64
	ops     vfs.NameLog[uint64]          // unsynced name operations, oldest first
	durable map[uint64]map[string]uint64 // each directory's durable names
	where   map[uint64]loc               // where a durable name puts each node
	handles map[uint64]uint64            // open handle → node
	nextFh  uint64
	cut     bool

	writes, fsyncs int // requests that reached the daemon
}

const rootID = fuse.FUSE_ROOT_ID

// Load returns the filesystem the backing directory back holds: its
// durable tree, nothing unsynced.
func Load(back string) (*FS, error) {
	f := &FS{RawFileSystem: fuse.NewDefaultRawFileSystem(), back: back, nodes: map[uint64]*node{},
		next: rootID + 1, durable: map[uint64]map[string]uint64{}, where: map[uint64]loc{}, handles: map[uint64]uint64{}}
	if err := os.RemoveAll(filepath.Join(back, "limbo")); err != nil {
		return nil, err
	}
	for _, d := range []string{"root", "limbo"} {
		if err := os.MkdirAll(filepath.Join(back, d), 0o755); err != nil {
			return nil, err
		}
	}
	f.nodes[rootID] = &node{dir: true, names: map[string]uint64{}}
	if err := f.scan(rootID, filepath.Join(back, "root")); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *FS) scan(id uint64, path string) error {
	ents, err := os.ReadDir(path)
	if err != nil {
		return err
	}
	f.durable[id] = map[string]uint64{}
	for _, e := range ents {
		child := f.next
		f.next++
		n := &node{dir: e.IsDir()}
		f.nodes[child] = n
		f.nodes[id].names[e.Name()] = child
		f.durable[id][e.Name()] = child
		f.where[child] = loc{id, e.Name()}
		if n.dir {
			n.names = map[string]uint64{}
			if err := f.scan(child, filepath.Join(path, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// hostPath is where node id's durable data (or directory) is.
func (f *FS) hostPath(id uint64) string {
	if id == rootID {
		return filepath.Join(f.back, "root")
	}
	if l, ok := f.where[id]; ok {
		return filepath.Join(f.hostPath(l.dir), l.name)
	}
	return f.limboPath(id)
}

func (f *FS) limboPath(id uint64) string {
	return filepath.Join(f.back, "limbo", strconv.FormatUint(id, 10))
}

// applyDurable makes e durable in the backing tree: the durable names
// change by the crash model's rule (NameEffect.Apply), and the backing
// files follow, a node no longer named going to limbo.
func (f *FS) applyDurable(e effect) error {
	names := f.durable[e.Dir]
	if names == nil {
		names = map[string]uint64{}
		f.durable[e.Dir] = names
	}
	old, had := names[e.Name]
	e.Apply(names)
	now, has := names[e.Name]
	move := func(id uint64, to *loc) error {
		src := f.hostPath(id)
		delete(f.where, id)
		if to != nil {
			f.where[id] = *to
		}
		return os.Rename(src, f.hostPath(id))
	}
	if had && (!has || now != old) {
		if err := move(old, nil); err != nil {
			return err
		}
	}
	if has && (!had || now != old) {
		return move(now, &loc{e.Dir, e.Name})
	}
	return nil
}

func (f *FS) newNode(dir bool) (uint64, *node, error) {
	id := f.next
	f.next++
	n := &node{dir: dir}
	var err error
	if dir {
		n.names = map[string]uint64{}
		err = os.Mkdir(f.limboPath(id), 0o755)
	} else {
		err = os.WriteFile(f.limboPath(id), nil, 0o644)
	}
	if err != nil {
		return 0, nil, err
	}
	f.nodes[id] = n
	return id, n, nil
}

// size is a file's size as seen now.
func (f *FS) size(id uint64, n *node) int64 {
	if n.live != nil || len(n.pending) > 0 {
		return int64(len(n.live))
	}
	fi, err := os.Stat(f.hostPath(id))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// materialize loads a file's contents into memory before an unsynced
// change.
func (f *FS) materialize(id uint64, n *node) error {
	if n.live != nil || len(n.pending) > 0 {
		return nil
	}
	b, err := os.ReadFile(f.hostPath(id))
	if err != nil {
		return err
	}
	if b == nil {
		b = []byte{}
	}
	n.live = b
	return nil
}

func (o op) apply(b []byte) []byte {
	end := o.size
	if !o.truncate {
		end = o.off + int64(len(o.data))
	}
	if o.truncate || end > int64(len(b)) {
		if int64(len(b)) >= end {
			b = b[:end]
		} else {
			b = append(b, make([]byte, end-int64(len(b)))...)
		}
	}
	if !o.truncate {
		copy(b[o.off:], o.data)
	}
	return b
}

func (f *FS) change(id uint64, n *node, o op) error {
	if err := f.materialize(id, n); err != nil {
		return err
	}
	n.live = o.apply(n.live)
	n.pending = append(n.pending, o)
	return nil
}

// writeHost applies ops to id's backing file.
func (f *FS) writeHost(id uint64, ops []op) error {
	h, err := os.OpenFile(f.hostPath(id), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	for _, o := range ops {
		if o.truncate {
			err = h.Truncate(o.size)
		} else {
			_, err = h.WriteAt(o.data, o.off)
		}
		if err != nil {
			break
		}
	}
	if cerr := h.Close(); err == nil {
		err = cerr
	}
	return err
}

// Cut loses power: every later request fails with EIO.
func (f *FS) Cut() {
	f.mu.Lock()
	f.cut = true
	f.mu.Unlock()
}

// Settle writes to the backing directory what the cut keeps, as opts
// draws, and drops the rest; the FS is no use after it.
func (f *FS) Settle(opts CutOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut = true
	rng := rand.New(rand.NewPCG(uint64(opts.Seed), 7))
	for _, o := range f.ops.Survivors(func() bool { return rng.Float64() < opts.KeepNames }) {
		for _, e := range o.Effects {
			if err := f.applyDurable(e); err != nil {
				return fmt.Errorf("%s: %w", o.What, err)
			}
		}
	}
	ids := make([]uint64, 0, len(f.nodes))
	for id := range f.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		var kept []op
		for _, o := range f.nodes[id].pending {
			switch {
			case o.truncate:
				if rng.Float64() < opts.KeepUnsynced {
					kept = append(kept, o)
				}
			case opts.Tear > 0 && rng.Float64() < opts.Tear:
				kept = append(kept, op{off: o.off, data: o.data[:rng.IntN(len(o.data)+1)]})
			default:
				for lo := 0; lo < len(o.data); {
					hi := min(len(o.data), int((o.off+int64(lo))/BlockSize+1)*BlockSize-int(o.off))
					if rng.Float64() < opts.KeepUnsynced {
						kept = append(kept, op{off: o.off + int64(lo), data: o.data[lo:hi]})
					}
					lo = hi
				}
			}
		}
		if len(kept) > 0 {
			if err := f.writeHost(id, kept); err != nil {
				return err
			}
		}
	}
	f.nodes, f.ops = nil, nil
	return nil
}

// Requests returns how many writes and fsyncs reached the daemon.
func (f *FS) Requests() (writes, fsyncs int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes, f.fsyncs
}

// UnsyncedNames returns the name operations not yet durable, oldest first.
func (f *FS) UnsyncedNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ops.Whats()
}

// locked runs fn on node id under the lock, unless the power is cut
// (EIO) or there is no such node (ENOENT).
func (f *FS) locked(id uint64, fn func(n *node) fuse.Status) fuse.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut {
		return fuse.EIO
	}
	n := f.nodes[id]
	if n == nil {
		return fuse.ENOENT
	}
	return fn(n)
}

func (f *FS) attr(id uint64, n *node, a *fuse.Attr) {
	a.Ino = id
	a.Nlink = 1
	if n.dir {
		a.Mode = syscall.S_IFDIR | 0o755
		a.Size = 4096
		return
	}
	a.Mode = syscall.S_IFREG | 0o644
	a.Size = uint64(f.size(id, n))
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = BlockSize
}

func (f *FS) entry(id uint64, n *node, out *fuse.EntryOut) {
	out.NodeId = id
	f.attr(id, n, &out.Attr)
}

func status(err error) fuse.Status {
	if err == nil {
		return fuse.OK
	}
	return fuse.ToStatus(err)
}

func (f *FS) String() string { return "powercut" }

// Lookup implements fuse.RawFileSystem.
func (f *FS) Lookup(_ <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	return f.locked(h.NodeId, func(d *node) fuse.Status {
		id, ok := d.names[name]
		if !ok {
			return fuse.ENOENT
		}
		f.entry(id, f.nodes[id], out)
		return fuse.OK
	})
}

// Forget implements fuse.RawFileSystem: nodes live until the cut.
func (f *FS) Forget(nodeid, nlookup uint64) {}

// GetAttr implements fuse.RawFileSystem.
func (f *FS) GetAttr(_ <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	return f.locked(in.NodeId, func(n *node) fuse.Status {
		f.attr(in.NodeId, n, &out.Attr)
		return fuse.OK
	})
}

// SetAttr implements fuse.RawFileSystem: only the size matters.
func (f *FS) SetAttr(_ <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	return f.locked(in.NodeId, func(n *node) fuse.Status {
		if in.Valid&fuse.FATTR_SIZE != 0 {
			if n.dir {
				return fuse.Status(syscall.EISDIR)
			}
			if err := f.change(in.NodeId, n, op{truncate: true, size: int64(in.Size)}); err != nil {
				return status(err)
			}
		}
		f.attr(in.NodeId, n, &out.Attr)
		return fuse.OK
	})
}

// Mkdir implements fuse.RawFileSystem.
func (f *FS) Mkdir(_ <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	return f.locked(in.NodeId, func(d *node) fuse.Status {
		if _, ok := d.names[name]; ok {
			return fuse.Status(syscall.EEXIST)
		}
		id, n, err := f.newNode(true)
		if err != nil {
			return status(err)
		}
		d.names[name] = id
		f.ops.Add("mkdir "+name, effect{Dir: in.NodeId, Name: name, To: id})
		f.entry(id, n, out)
		return fuse.OK
	})
}

func (f *FS) remove(parent uint64, name string, dir bool) fuse.Status {
	return f.locked(parent, func(d *node) fuse.Status {
		id, ok := d.names[name]
		if !ok {
			return fuse.ENOENT
		}
		n := f.nodes[id]
		switch {
		case dir && !n.dir:
			return fuse.Status(syscall.ENOTDIR)
		case !dir && n.dir:
			return fuse.Status(syscall.EISDIR)
		case dir && len(n.names) > 0:
			return fuse.Status(syscall.ENOTEMPTY)
		}
		delete(d.names, name)
		f.ops.Add("remove "+name, effect{Dir: parent, Name: name, Was: id})
		return fuse.OK
	})
}

// Unlink implements fuse.RawFileSystem.
func (f *FS) Unlink(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return f.remove(h.NodeId, name, false)
}

// Rmdir implements fuse.RawFileSystem.
func (f *FS) Rmdir(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return f.remove(h.NodeId, name, true)
}

// Rename implements fuse.RawFileSystem (plain renames only).
func (f *FS) Rename(_ <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	return f.locked(in.NodeId, func(od *node) fuse.Status {
		if in.Flags != 0 {
			return fuse.EINVAL
		}
		nd := f.nodes[in.Newdir]
		if nd == nil || !nd.dir {
			return fuse.ENOENT
		}
		id, ok := od.names[oldName]
		if !ok {
			return fuse.ENOENT
		}
		if in.NodeId == in.Newdir && oldName == newName {
			return fuse.OK
		}
		if old, ok := nd.names[newName]; ok && (f.nodes[old].dir || f.nodes[id].dir) {
			return fuse.Status(syscall.EEXIST)
		}
		delete(od.names, oldName)
		nd.names[newName] = id
		f.ops.Add("rename "+oldName+" "+newName,
			effect{Dir: in.NodeId, Name: oldName, Was: id},
			effect{Dir: in.Newdir, Name: newName, To: id})
		return fuse.OK
	})
}

func (f *FS) open(id uint64, out *fuse.OpenOut) {
	f.nextFh++
	f.handles[f.nextFh] = id
	out.Fh = f.nextFh
	out.OpenFlags = fuse.FOPEN_DIRECT_IO // every read and write comes here
}

// Create implements fuse.RawFileSystem.
func (f *FS) Create(_ <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	return f.locked(in.NodeId, func(d *node) fuse.Status {
		if id, ok := d.names[name]; ok {
			n := f.nodes[id]
			switch {
			case in.Flags&syscall.O_EXCL != 0:
				return fuse.Status(syscall.EEXIST)
			case n.dir:
				return fuse.Status(syscall.EISDIR)
			case in.Flags&syscall.O_TRUNC != 0:
				if err := f.change(id, n, op{truncate: true}); err != nil {
					return status(err)
				}
			}
			f.entry(id, n, &out.EntryOut)
			f.open(id, &out.OpenOut)
			return fuse.OK
		}
		id, n, err := f.newNode(false)
		if err != nil {
			return status(err)
		}
		d.names[name] = id
		f.ops.Add("create "+name, effect{Dir: in.NodeId, Name: name, To: id})
		f.entry(id, n, &out.EntryOut)
		f.open(id, &out.OpenOut)
		return fuse.OK
	})
}

// Open implements fuse.RawFileSystem.
func (f *FS) Open(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return f.locked(in.NodeId, func(n *node) fuse.Status {
		if n.dir {
			return fuse.Status(syscall.EISDIR)
		}
		if in.Flags&syscall.O_TRUNC != 0 {
			if err := f.change(in.NodeId, n, op{truncate: true}); err != nil {
				return status(err)
			}
		}
		f.open(in.NodeId, out)
		return fuse.OK
	})
}

// Read implements fuse.RawFileSystem, from the in-memory view.
func (f *FS) Read(_ <-chan struct{}, in *fuse.ReadIn, buf []byte) (res fuse.ReadResult, st fuse.Status) {
	st = f.locked(in.NodeId, func(n *node) fuse.Status {
		off := int64(in.Offset)
		if n.live != nil || len(n.pending) > 0 {
			if off >= int64(len(n.live)) {
				res = fuse.ReadResultData(nil)
				return fuse.OK
			}
			c := copy(buf[:min(int(in.Size), len(buf))], n.live[off:])
			res = fuse.ReadResultData(buf[:c])
			return fuse.OK
		}
		h, err := os.Open(f.hostPath(in.NodeId))
		if err != nil {
			return status(err)
		}
		defer h.Close()
		c, err := h.ReadAt(buf[:min(int(in.Size), len(buf))], off)
		if c == 0 && err != nil && !errors.Is(err, io.EOF) {
			return status(err)
		}
		res = fuse.ReadResultData(buf[:c])
		return fuse.OK
	})
	return res, st
}

// Write implements fuse.RawFileSystem: into memory, not yet durable.
func (f *FS) Write(_ <-chan struct{}, in *fuse.WriteIn, data []byte) (written uint32, st fuse.Status) {
	st = f.locked(in.NodeId, func(n *node) fuse.Status {
		f.writes++
		if err := f.change(in.NodeId, n, op{off: int64(in.Offset), data: slices.Clone(data)}); err != nil {
			return status(err)
		}
		written = uint32(len(data))
		return fuse.OK
	})
	return written, st
}

// Fsync implements fuse.RawFileSystem: the file's data becomes durable.
func (f *FS) Fsync(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	return f.locked(in.NodeId, func(n *node) fuse.Status {
		f.fsyncs++
		if len(n.pending) == 0 {
			return fuse.OK
		}
		if err := f.writeHost(in.NodeId, n.pending); err != nil {
			return status(err)
		}
		n.pending, n.live = nil, nil
		return fuse.OK
	})
}

// FsyncDir implements fuse.RawFileSystem: the directory's name operations
// become durable, with the earlier ones on the same names.
func (f *FS) FsyncDir(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	return f.locked(in.NodeId, func(_ *node) fuse.Status {
		f.fsyncs++
		durable, rest := f.ops.Sync(in.NodeId)
		for _, o := range durable {
			for _, e := range o.Effects {
				if err := f.applyDurable(e); err != nil {
					return status(err)
				}
			}
		}
		f.ops = rest
		return fuse.OK
	})
}

// Flush implements fuse.RawFileSystem.
func (f *FS) Flush(_ <-chan struct{}, in *fuse.FlushIn) fuse.Status { return fuse.OK }

// Release implements fuse.RawFileSystem.
func (f *FS) Release(_ <-chan struct{}, in *fuse.ReleaseIn) {
	f.mu.Lock()
	delete(f.handles, in.Fh)
	f.mu.Unlock()
}

// OpenDir implements fuse.RawFileSystem.
func (f *FS) OpenDir(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return f.locked(in.NodeId, func(n *node) fuse.Status {
		if !n.dir {
			return fuse.Status(syscall.ENOTDIR)
		}
		return fuse.OK
	})
}

// ReadDir implements fuse.RawFileSystem.
func (f *FS) ReadDir(_ <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return f.locked(in.NodeId, func(n *node) fuse.Status {
		names := make([]string, 0, len(n.names))
		for name := range n.names {
			names = append(names, name)
		}
		slices.Sort(names)
		for i := int(in.Offset); i < len(names); i++ {
			id := n.names[names[i]]
			mode := uint32(syscall.S_IFREG)
			if f.nodes[id].dir {
				mode = syscall.S_IFDIR
			}
			if !out.AddDirEntry(fuse.DirEntry{Name: names[i], Ino: id, Mode: mode, Off: uint64(i + 1)}) {
				break
			}
		}
		return fuse.OK
	})
}

// ReleaseDir implements fuse.RawFileSystem.
func (f *FS) ReleaseDir(in *fuse.ReleaseIn) {}

// StatFs implements fuse.RawFileSystem.
func (f *FS) StatFs(_ <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	out.Bsize = BlockSize
	out.Blocks, out.Bfree, out.Bavail = 1<<20, 1<<19, 1<<19
	out.Files, out.Ffree = 1<<20, 1<<19
	out.NameLen = 255
	return fuse.OK
}
