package main

import (
	"bufio"
	"bytes"
	"encoding/gob"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	"github.com/instadump/instadump"
	"github.com/vmihailenco/msgpack/v5"
	bolt "go.etcd.io/bbolt"
)

// system is one way of keeping the workload's states on disk.
type system interface {
	name() string
	// open creates the store in dir holding w's states (not timed).
	open(dir string, w *workload) error
	// save writes the states in changed (all when nil), durably.
	save(w *workload, changed []int) error
	close() error
	// readAll opens the store in dir and reads every state back into
	// its Go type.
	readAll(dir string, w *workload) error
}

// --- instadump ---

type idump struct {
	db   *instadump.DB
	sets []func(any)
	opts []instadump.Option // Open's, e.g. a compression level
}

func (*idump) name() string { return "instadump" }

// register makes a typed state and returns a setter taking any.
func register[T any](db *instadump.DB, name string, v T) (func(any), error) {
	s, err := instadump.NewState(db, name, v)
	if err != nil {
		return nil, err
	}
	return func(x any) { s.Set(x.(T)) }, nil
}

func registerAll(db *instadump.DB, w *workload) ([]func(any), error) {
	var sets []func(any)
	for i, name := range w.names {
		var set func(any)
		var err error
		switch v := w.values[i].(type) {
		case map[string]Record:
			set, err = register(db, name, v)
		case []Record:
			set, err = register(db, name, v)
		case []byte:
			set, err = register(db, name, v)
		default:
			err = fmt.Errorf("no state type for %T", v)
		}
		if err != nil {
			return nil, err
		}
		sets = append(sets, set)
	}
	return sets, nil
}

func (s *idump) open(dir string, w *workload) error {
	db, err := instadump.Open(dir, s.opts...)
	if err != nil {
		return err
	}
	s.db = db
	s.sets, err = registerAll(db, w)
	return err
}

func (s *idump) save(w *workload, changed []int) error {
	if changed == nil {
		for i := range w.values {
			s.sets[i](w.values[i])
		}
	} else {
		for _, i := range changed {
			s.sets[i](w.values[i])
		}
	}
	_, err := s.db.Save()
	return err
}

func (s *idump) close() error { return s.db.Close() }

func (s *idump) readAll(dir string, w *workload) error {
	db, err := instadump.Open(dir)
	if err != nil {
		return err
	}
	defer db.Close()
	// Registering loads and decodes each state: zero defaults of each type.
	zero := &workload{names: w.names}
	for i := range w.values {
		switch w.values[i].(type) {
		case map[string]Record:
			zero.values = append(zero.values, map[string]Record(nil))
		case []Record:
			zero.values = append(zero.values, []Record(nil))
		case []byte:
			zero.values = append(zero.values, []byte(nil))
		}
	}
	_, err = registerAll(db, zero)
	return err
}

// --- naive: gob to a temp file, fsync, rename, directory fsync ---

type naive struct{ dir string }

func (*naive) name() string { return "naive gob" }

func (s *naive) open(dir string, w *workload) error {
	s.dir = dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return s.save(w, nil)
}

func (s *naive) save(w *workload, _ []int) error {
	tmp := filepath.Join(s.dir, "state.gob.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	enc := gob.NewEncoder(bw)
	for _, v := range w.values { // every state, every time
		if err := enc.Encode(v); err != nil {
			f.Close()
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "state.gob")); err != nil {
		return err
	}
	return syncDir(s.dir)
}

func (*naive) close() error { return nil }

func (s *naive) readAll(dir string, w *workload) error {
	f, err := os.Open(filepath.Join(dir, "state.gob"))
	if err != nil {
		return err
	}
	defer f.Close()
	dec := gob.NewDecoder(bufio.NewReaderSize(f, 1<<20))
	for i := range w.values {
		if err := dec.Decode(w.typed(i)); err != nil {
			return err
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func encodeMsgpack(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	err := enc.Encode(v)
	return buf.Bytes(), err
}

// --- bbolt: each state one key, one read-write transaction ---

type boltSys struct{ db *bolt.DB }

var bucket = []byte("states")

func (*boltSys) name() string { return "bbolt" }

func (s *boltSys) open(dir string, w *workload) error {
	os.MkdirAll(dir, 0o755)
	db, err := bolt.Open(filepath.Join(dir, "bolt.db"), 0o644, nil)
	if err != nil {
		return err
	}
	s.db = db
	return s.save(w, nil)
}

func (s *boltSys) save(w *workload, changed []int) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		return putEach(w, changed, b.Put) // names are sorted: fair to bbolt
	})
}

func (s *boltSys) close() error { return s.db.Close() }

func (s *boltSys) readAll(dir string, w *workload) error {
	db, err := bolt.Open(filepath.Join(dir, "bolt.db"), 0o644, &bolt.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		for i, name := range w.names {
			if err := msgpack.Unmarshal(b.Get([]byte(name)), w.typed(i)); err != nil {
				return err
			}
		}
		return nil
	})
}

// --- pebble: each state one key, a batch committed with Sync ---

type pebbleSys struct{ db *pebble.DB }

func (*pebbleSys) name() string { return "pebble" }

// quiet drops Pebble's informational log lines.
type quiet struct{}

func (quiet) Infof(string, ...any)         {}
func (quiet) Errorf(f string, args ...any) { fmt.Fprintf(os.Stderr, "pebble: "+f+"\n", args...) }
func (quiet) Fatalf(f string, args ...any) { fail(fmt.Errorf("pebble: "+f, args...)) }

func (s *pebbleSys) open(dir string, w *workload) error {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quiet{}})
	if err != nil {
		return err
	}
	s.db = db
	return s.save(w, nil)
}

func (s *pebbleSys) save(w *workload, changed []int) error {
	b := s.db.NewBatch()
	defer b.Close()
	if err := putEach(w, changed, func(k, v []byte) error { return b.Set(k, v, nil) }); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

func (s *pebbleSys) close() error { return s.db.Close() }

func (s *pebbleSys) readAll(dir string, w *workload) error {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quiet{}})
	if err != nil {
		return err
	}
	defer db.Close()
	for i, name := range w.names {
		v, closer, err := db.Get([]byte(name))
		if err != nil {
			return err
		}
		err = msgpack.Unmarshal(v, w.typed(i))
		closer.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// putEach calls put with the name and msgpack encoding of each state in
// changed (all when nil), in order.
func putEach(w *workload, changed []int, put func(key, value []byte) error) error {
	if changed == nil {
		changed = allIndexes(w)
	}
	for _, i := range changed {
		v, err := encodeMsgpack(w.values[i])
		if err != nil {
			return err
		}
		if err := put([]byte(w.names[i]), v); err != nil {
			return err
		}
	}
	return nil
}

func allIndexes(w *workload) []int {
	out := make([]int, len(w.values))
	for i := range out {
		out[i] = i
	}
	return out
}
