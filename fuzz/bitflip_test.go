package fuzz

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand"
	"path"
	"testing"

	"github.com/instadump/instadump/engine"
	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

// Every bit of CURRENT, the manifest and the segments' headers, indexes
// and trailers, and sampled bits of segment bodies, flipped one at a
// time: the right data or an error wrapping ErrCorrupt that names the
// file, never wrong data (I4). A flip in the last manifest record may
// read as a torn tail: then the snapshot before it, intact.
func TestCrashBitFlips(t *testing.T) {
	mem, w := threeSaves(t, func(i int) map[string]string {
		return map[string]string{"a": val("a", i, 30), fmt.Sprint("s", i): val("s", i, 2000)}
	})
	w.e.Close()
	names, _ := mem.List(dbDir)
	rng := rand.New(rand.NewSource(1))
	for _, name := range names {
		if name == vfs.LockFile {
			continue
		}
		data := readAll(t, mem, name)
		var bits []int
		if _, ok := segment.ParseFileName(name); ok {
			ioff := int(binary.LittleEndian.Uint64(data[len(data)-segment.TrailerSize:]))
			for b := 0; b < 8*segment.HeaderSize; b++ {
				bits = append(bits, b)
			}
			for b := 8 * ioff; b < 8*len(data); b++ {
				bits = append(bits, b)
			}
			for k := 0; k < 64; k++ {
				bits = append(bits, 8*segment.HeaderSize+rng.Intn(8*(ioff-segment.HeaderSize)))
			}
		} else {
			for b := 0; b < 8*len(data); b++ {
				bits = append(bits, b)
			}
		}
		for _, bit := range bits {
			detected, err := flipAndCheck(mem, name, bit, w.m)
			if err != nil {
				t.Fatalf("%s bit %d (byte %d): %v", name, bit, bit/8, err)
			}
			figures.flipped.Add(1)
			if detected {
				figures.flipDetected.Add(1)
			}
		}
	}
}

// rewrite changes file name of the DB with fn, durably.
func rewrite(fsys vfs.FS, name string, fn func([]byte)) error {
	data, err := readFile(fsys, name)
	if err != nil {
		return err
	}
	fn(data)
	f, err := fsys.Create(path.Join(dbDir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

// readFile reads file name of the DB.
func readFile(fsys vfs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(path.Join(dbDir, name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	return vfs.ReadAll(f, size)
}

func readAll(t *testing.T, fsys vfs.FS, name string) []byte {
	data, err := readFile(fsys, name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// flipAndCheck flips one bit and checks what a reader gets; detected
// says whether the damage was reported (as an error or a torn tail).
func flipAndCheck(mem *vfs.MemFS, name string, bit int, m *model) (detected bool, err error) {
	c := mem.CrashClone(vfs.CrashOptions{KeepUnsynced: 1})
	if err := rewrite(c, name, func(b []byte) { b[bit/8] ^= 1 << (bit % 8) }); err != nil {
		return false, err
	}

	named := func(err error) error {
		var ce *errs.CorruptError
		if !errors.Is(err, errs.ErrCorrupt) || !errors.As(err, &ce) || path.Base(ce.File) != name {
			return fmt.Errorf("error does not wrap ErrCorrupt naming %s: %v", name, err)
		}
		return nil
	}
	e, err := engine.Open(dbDir, engine.Options{FS: c, ReadOnly: true, Retain: 3})
	if err != nil {
		return true, named(err)
	}
	defer e.Close()
	cur, _ := e.Current()
	if cur.ID != m.ackedID {
		_, isMan := manifest.ParseFileName(name)
		if rep := e.Report(); !isMan || cur.ID != m.ackedID-1 || rep.TornTail == nil && rep.DamagedTail == nil {
			return false, fmt.Errorf("recovered snapshot %d, want %d (or, from a torn or damaged last record, %d)", cur.ID, m.ackedID, m.ackedID-1)
		}
		detected = true
	}
	for _, s := range e.Snapshots() {
		got, err := contents(e, s)
		if err != nil {
			if nerr := named(err); nerr != nil {
				return true, nerr
			}
			detected = true
			continue
		}
		if !maps.Equal(got, m.history[s.ID]) {
			return false, fmt.Errorf("WRONG DATA: snapshot %d reads %s, was %s", s.ID, brief(got), brief(m.history[s.ID]))
		}
	}
	return detected, nil
}
