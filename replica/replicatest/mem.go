package replicatest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/instadump/instadump/replica"
)

// MemStore is a replica.Store in memory, for tests that need a fast store
// and no files: it passes TestStore. Objects are copied in and out, so a
// caller cannot change one after Put.
type MemStore struct {
	mu   sync.Mutex
	objs map[string][]byte
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{objs: map[string][]byte{}} }

// String implements replica.Store.
func (m *MemStore) String() string { return "memory store" }

func (m *MemStore) fail(op, key string, err error) error {
	return fmt.Errorf("replicatest: %s %q in %s: %w", op, key, m, err)
}

// read reads the object's size bytes, checking ctx between chunks.
func (m *MemStore) read(ctx context.Context, r io.Reader, size int64) ([]byte, error) {
	if size < 0 {
		return nil, fmt.Errorf("the size %d is negative", size)
	}
	var buf bytes.Buffer
	buf.Grow(int(min(size, 64<<20)))
	for buf.Len() < int(size) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		_, err := io.CopyN(&buf, r, min(1<<20, size-int64(buf.Len())))
		if err == io.EOF {
			return nil, fmt.Errorf("the reader ended after %d of %d bytes: %w", buf.Len(), size, io.ErrUnexpectedEOF)
		}
		if err != nil {
			return nil, fmt.Errorf("reading the object's bytes: %w", err)
		}
	}
	return buf.Bytes(), ctx.Err()
}

// Put implements replica.Store.
func (m *MemStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return m.write(ctx, "put", key, r, size)
}

// Create implements replica.Store.
func (m *MemStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	return m.write(ctx, "create", key, r, size)
}

func (m *MemStore) write(ctx context.Context, op, key string, r io.Reader, size int64) error {
	if err := replica.CheckKey(key); err != nil {
		return m.fail(op, key, err)
	}
	b, err := m.read(ctx, r, size)
	if err != nil {
		return m.fail(op, key, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objs[key]; ok && op == "create" {
		return m.fail(op, key, replica.ErrExists)
	}
	m.objs[key] = b
	return nil
}

// Get implements replica.Store.
func (m *MemStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := replica.CheckKey(key); err != nil {
		return nil, m.fail("get", key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, m.fail("get", key, err)
	}
	m.mu.Lock()
	b, ok := m.objs[key]
	m.mu.Unlock()
	if !ok {
		return nil, m.fail("get", key, replica.ErrNotFound)
	}
	return &ctxReader{ctx: ctx, r: bytes.NewReader(b)}, nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (c *ctxReader) Close() error { return nil }

// List implements replica.Store.
func (m *MemStore) List(ctx context.Context, prefix string) ([]replica.Object, error) {
	if err := replica.CheckPrefix(prefix); err != nil {
		return nil, m.fail("list", prefix, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, m.fail("list", prefix, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	objs := []replica.Object{}
	for k, b := range m.objs {
		if strings.HasPrefix(k, prefix) {
			objs = append(objs, replica.Object{Key: k, Size: int64(len(b))})
		}
	}
	slices.SortFunc(objs, func(a, b replica.Object) int { return strings.Compare(a.Key, b.Key) })
	return objs, nil
}

// Delete implements replica.Store.
func (m *MemStore) Delete(ctx context.Context, key string) error {
	if err := replica.CheckKey(key); err != nil {
		return m.fail("delete", key, err)
	}
	if err := ctx.Err(); err != nil {
		return m.fail("delete", key, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, key)
	return nil
}
