package replicatest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/instadump/instadump/replica"
)

// BigSize is the size of the largest objects TestStore writes: 12 MiB and
// a few bytes, enough to cross a multipart threshold of 5 MiB (S3's
// smallest part) more than twice.
const BigSize = 12<<20 + 5

// TestStore runs, as subtests of t, the tests every replica.Store must
// pass: round trips of empty to multi-MiB objects from plain and seekable
// readers, replacement, Create exactly once (16 goroutines racing, 20
// rounds, then 4 with objects of about BigSize), ErrExists and ErrNotFound,
// List's order and prefixes, Delete's idempotence, keys of many segments,
// invalid keys, readers that fail or end early, and ctx cancellation.
//
// It writes only under a fresh prefix "replicatest-<random>/", and deletes
// what it wrote when it ends, so s may point at a location shared with
// other data or other runs.
func TestStore(t *testing.T, s replica.Store) {
	t.Helper()
	if s.String() == "" {
		t.Errorf("String() is empty; it must describe the location")
	}
	c := &conf{s: s, root: "replicatest-" + randomHex(6) + "/"}
	t.Cleanup(func() { c.cleanup(t) })
	t.Run("RoundTrip", c.roundTrip)
	t.Run("Replace", c.replace)
	t.Run("Create", c.create)
	t.Run("CreateRace", c.createRace)
	t.Run("PutRace", c.putRace)
	t.Run("NotFound", c.notFound)
	t.Run("List", c.list)
	t.Run("DeepKeys", c.deepKeys)
	t.Run("InvalidKeys", c.invalidKeys)
	t.Run("ShortReader", c.shortReader)
	t.Run("FailingReader", c.failingReader)
	t.Run("ReadWhileReplaced", c.readWhileReplaced)
	t.Run("Cancel", c.cancel)
}

type conf struct {
	s    replica.Store
	root string // every key begins with it
}

func (c *conf) key(parts ...string) string { return c.root + strings.Join(parts, "/") }

func (c *conf) cleanup(t *testing.T) {
	ctx := context.WithoutCancel(t.Context())
	objs, err := c.s.List(ctx, c.root)
	if err != nil {
		t.Errorf("cleaning up: %v", err)
		return
	}
	for _, o := range objs {
		if err := c.s.Delete(ctx, o.Key); err != nil {
			t.Errorf("cleaning up: %v", err)
		}
	}
}

// Data returns n pseudo-random bytes, the same for the same seed.
func Data(seed uint64, n int) []byte {
	b := make([]byte, n)
	var s [32]byte
	s[0], s[1], s[2], s[3] = byte(seed), byte(seed>>8), byte(seed>>16), byte(seed>>24)
	s[4], s[5], s[6], s[7] = byte(seed>>32), byte(seed>>40), byte(seed>>48), byte(seed>>56)
	r := mrand.NewChaCha8(s)
	r.Read(b)
	return b
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// plainReader hides every method but Read, as a pipe or a network stream
// would.
type plainReader struct{ r io.Reader }

func (p *plainReader) Read(b []byte) (int, error) { return p.r.Read(b) }

func (c *conf) put(t *testing.T, key string, data []byte) {
	t.Helper()
	if err := c.s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
}

func (c *conf) get(t *testing.T, key string) []byte {
	t.Helper()
	rc, err := c.s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}
	if err := rc.Close(); err != nil {
		t.Errorf("closing %q: %v", key, err)
	}
	return b
}

func (c *conf) wantData(t *testing.T, key string, want []byte) {
	t.Helper()
	got := c.get(t, key)
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) gave %d bytes (%s), want %d bytes (%s)", key, len(got), head(got), len(want), head(want))
	}
}

func (c *conf) wantNotFound(t *testing.T, key string) {
	t.Helper()
	rc, err := c.s.Get(t.Context(), key)
	if err == nil {
		b, _ := io.ReadAll(rc)
		rc.Close()
		t.Fatalf("Get(%q) found %d bytes, want ErrNotFound", key, len(b))
	}
	if !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("Get(%q): %v, want ErrNotFound", key, err)
	}
}

func head(b []byte) string {
	if len(b) > 8 {
		return hex.EncodeToString(b[:8]) + "..."
	}
	return hex.EncodeToString(b)
}

func (c *conf) roundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 4099, 3<<20 + 1, BigSize} {
		for _, plain := range []bool{false, true} {
			data := Data(uint64(n), n)
			kind := "seekable"
			// The reader holds 10 bytes more than the object: Put must read
			// exactly size bytes.
			br := bytes.NewReader(append(data, "0123456789"...))
			var r io.Reader = br
			if plain {
				kind = "plain"
				r = &plainReader{br}
			}
			key := c.key("rt", fmt.Sprintf("%d-%s", n, kind))
			if err := c.s.Put(t.Context(), key, r, int64(n)); err != nil {
				t.Fatalf("Put(%q, %d bytes from a %s reader): %v", key, n, kind, err)
			}
			if br.Len() != 10 {
				t.Errorf("Put(%q, %d bytes from a %s reader) left %d bytes unread, want 10", key, n, kind, br.Len())
			}
			c.wantData(t, key, data)
			objs, err := c.s.List(t.Context(), key)
			if err != nil {
				t.Fatalf("List(%q): %v", key, err)
			}
			if len(objs) != 1 || objs[0] != (replica.Object{Key: key, Size: int64(n)}) {
				t.Fatalf("List(%q) = %v, want the one object of %d bytes", key, objs, n)
			}
		}
	}
}

func (c *conf) replace(t *testing.T) {
	key := c.key("replace", "obj")
	a, b := Data(1, 3000), Data(2, 1000)
	c.put(t, key, a)
	c.put(t, key, b)
	c.wantData(t, key, b)
	objs, err := c.s.List(t.Context(), key)
	if err != nil || len(objs) != 1 || objs[0].Size != int64(len(b)) {
		t.Fatalf("List(%q) = %v, %v; want one object of %d bytes", key, objs, err, len(b))
	}
}

func (c *conf) create(t *testing.T) {
	ctx := t.Context()
	key := c.key("create", "obj")
	a, b := Data(3, 2000), Data(4, 100)
	if err := c.s.Create(ctx, key, bytes.NewReader(a), int64(len(a))); err != nil {
		t.Fatalf("Create(%q) of an absent key: %v", key, err)
	}
	c.wantData(t, key, a)
	err := c.s.Create(ctx, key, bytes.NewReader(b), int64(len(b)))
	if !errors.Is(err, replica.ErrExists) {
		t.Fatalf("Create(%q) of a taken key: %v, want ErrExists", key, err)
	}
	c.wantData(t, key, a)
	c.put(t, key, b) // Put replaces whatever is there
	c.wantData(t, key, b)
	if err := c.s.Create(ctx, key, &plainReader{bytes.NewReader(a)}, int64(len(a))); !errors.Is(err, replica.ErrExists) {
		t.Fatalf("Create(%q) after Put: %v, want ErrExists", key, err)
	}
	if err := c.s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete(%q): %v", key, err)
	}
	if err := c.s.Create(ctx, key, bytes.NewReader(a), int64(len(a))); err != nil {
		t.Fatalf("Create(%q) after Delete: %v", key, err)
	}
	c.wantData(t, key, a)
	// An empty object is an object.
	empty := c.key("create", "empty")
	if err := c.s.Create(ctx, empty, bytes.NewReader(nil), 0); err != nil {
		t.Fatalf("Create(%q) of 0 bytes: %v", empty, err)
	}
	if err := c.s.Create(ctx, empty, bytes.NewReader(nil), 0); !errors.Is(err, replica.ErrExists) {
		t.Fatalf("Create(%q) of 0 bytes again: %v, want ErrExists", empty, err)
	}
}

// createRace has 16 goroutines Create one key at once, 20 times, and 4
// goroutines with objects of about BigSize (each a byte shorter than the
// one before, so the winner's is told apart; sent in parts by a store
// that has them) once: exactly one must win each time, the others get
// ErrExists, and the object is the winner's.
func (c *conf) createRace(t *testing.T) {
	const racers, rounds = 16, 20
	for round := range rounds {
		c.raceCreates(t, fmt.Sprintf("%02d", round), racers, func(g int) []byte {
			return Data(uint64(round*racers+g), 100+g*37)
		})
	}
	c.raceCreates(t, "big", 4, func(g int) []byte { return Data(uint64(rounds*racers+g), BigSize-g) })
}

// raceCreates has racers goroutines Create the key name at once, each g
// with data(g).
func (c *conf) raceCreates(t *testing.T, name string, racers int, data func(g int) []byte) {
	key := c.key("race", name)
	start := make(chan struct{})
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for g := range racers {
		wg.Go(func() {
			d := data(g)
			<-start
			errs[g] = c.s.Create(t.Context(), key, bytes.NewReader(d), int64(len(d)))
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for g, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("goroutines %d and %d both created %q", winner, g, key)
		case err == nil:
			winner = g
		case !errors.Is(err, replica.ErrExists):
			t.Fatalf("goroutine %d: Create(%q): %v, want nil or ErrExists", g, key, err)
		}
	}
	if winner < 0 {
		t.Fatalf("no Create of %q succeeded", key)
	}
	c.wantData(t, key, data(winner))
}

// putRace has 8 goroutines Put one key at once: the object is then one of
// theirs, whole.
func (c *conf) putRace(t *testing.T) {
	const racers = 8
	key := c.key("putrace", "obj")
	for round := range 3 {
		start := make(chan struct{})
		var wg sync.WaitGroup
		for g := range racers {
			wg.Go(func() {
				data := Data(uint64(1000+round*racers+g), 200<<10+g)
				<-start
				if err := c.s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data))); err != nil {
					t.Errorf("round %d: goroutine %d: Put(%q): %v", round, g, key, err)
				}
			})
		}
		close(start)
		wg.Wait()
		got := c.get(t, key)
		g := len(got) - 200<<10
		if g < 0 || g >= racers || !bytes.Equal(got, Data(uint64(1000+round*racers+g), 200<<10+g)) {
			t.Fatalf("round %d: Get(%q) gave %d bytes that are no racer's whole object", round, key, len(got))
		}
	}
}

func (c *conf) notFound(t *testing.T) {
	ctx := t.Context()
	key := c.key("nf", "obj")
	c.wantNotFound(t, key)
	if err := c.s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete(%q) of an absent key: %v", key, err)
	}
	c.put(t, key, Data(5, 10))
	if err := c.s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete(%q): %v", key, err)
	}
	c.wantNotFound(t, key)
	if err := c.s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete(%q) twice: %v", key, err)
	}
	if objs, err := c.s.List(ctx, c.key("nf")); err != nil || len(objs) != 0 {
		t.Fatalf("List after Delete = %v, %v; want nothing", objs, err)
	}
	// A prefix of an existing key's path is no object.
	c.put(t, c.key("nf", "dir", "obj"), Data(6, 10))
	c.wantNotFound(t, c.key("nf", "dir"))
	c.wantNotFound(t, c.key("nf", "di"))
	if err := c.s.Delete(ctx, c.key("nf", "dir")); err != nil {
		t.Fatalf("Delete of a key that is only a prefix: %v", err)
	}
	c.wantData(t, c.key("nf", "dir", "obj"), Data(6, 10))
}

func (c *conf) list(t *testing.T) {
	ctx := t.Context()
	// Sorted by byte: '-' < '.' < '/' < 'z', so a flat listing interleaves
	// what a directory walk would keep apart.
	names := []string{"x/1", "x-y", "x.y", "x/2/3", "xz", "x/2/4", "w"}
	var all []replica.Object
	for i, n := range names {
		key := c.key("list", n)
		data := Data(uint64(100+i), 10+i)
		c.put(t, key, data)
		all = append(all, replica.Object{Key: key, Size: int64(len(data))})
	}
	slices.SortFunc(all, func(a, b replica.Object) int { return strings.Compare(a.Key, b.Key) })
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"", names},
		{"x", []string{"x/1", "x-y", "x.y", "x/2/3", "xz", "x/2/4"}},
		{"x/", []string{"x/1", "x/2/3", "x/2/4"}},
		{"x/2", []string{"x/2/3", "x/2/4"}},
		{"x/2/4", []string{"x/2/4"}},
		{"x.", []string{"x.y"}},
		{"x/2/4/", nil},
		{"y", nil},
		{"nothing/here/", nil},
	} {
		prefix := c.key("list", tc.prefix)
		var want []replica.Object
		for _, o := range all {
			for _, w := range tc.want {
				if o.Key == c.key("list", w) {
					want = append(want, o)
				}
			}
		}
		got, err := c.s.List(ctx, prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		if len(got) != len(want) || (len(want) > 0 && !slices.Equal(got, want)) {
			t.Fatalf("List(%q) =\n%v\nwant\n%v", prefix, got, want)
		}
	}
	// The whole store lists in order too, with ours among whatever else.
	everything, err := c.s.List(ctx, "")
	if err != nil {
		t.Fatalf(`List(""): %v`, err)
	}
	if !slices.IsSortedFunc(everything, func(a, b replica.Object) int { return strings.Compare(a.Key, b.Key) }) {
		t.Fatalf(`List("") is not sorted by key`)
	}
	var ours []replica.Object
	for _, o := range everything {
		if strings.HasPrefix(o.Key, c.key("list")+"/") {
			ours = append(ours, o)
		}
	}
	if !slices.Equal(ours, all) {
		t.Fatalf(`List("") holds %v of ours, want %v`, ours, all)
	}
}

func (c *conf) deepKeys(t *testing.T) {
	segs := make([]string, 16)
	for i := range segs {
		segs[i] = fmt.Sprintf("s%02d", i)
	}
	key := c.key(append([]string{"deep"}, segs...)...)
	data := Data(7, 777)
	c.put(t, key, data)
	c.wantData(t, key, data)
	objs, err := c.s.List(t.Context(), c.key(append([]string{"deep"}, segs[:8]...)...)+"/")
	if err != nil || len(objs) != 1 || objs[0].Key != key {
		t.Fatalf("List of half the path = %v, %v; want %q", objs, err, key)
	}
	if err := c.s.Delete(t.Context(), key); err != nil {
		t.Fatalf("Delete(%q): %v", key, err)
	}
	c.wantNotFound(t, key)
}

func (c *conf) invalidKeys(t *testing.T) {
	ctx := t.Context()
	bad := []string{
		"", "/abs", c.root + "a//b", c.root + "a/", c.root + "../up", c.root + "a/../b",
		c.root + "./a", c.root + "a\\b", c.root + "nul\x00", c.root + "a/" + replica.ReservedPrefix + "x",
		c.root + strings.Repeat("k", replica.MaxKeyLen), c.root + "\xff",
	}
	for _, key := range bad {
		if err := c.s.Put(ctx, key, bytes.NewReader(nil), 0); !errors.Is(err, replica.ErrInvalidKey) {
			t.Errorf("Put(%q): %v, want ErrInvalidKey", key, err)
		}
		if err := c.s.Create(ctx, key, bytes.NewReader(nil), 0); !errors.Is(err, replica.ErrInvalidKey) {
			t.Errorf("Create(%q): %v, want ErrInvalidKey", key, err)
		}
		if rc, err := c.s.Get(ctx, key); !errors.Is(err, replica.ErrInvalidKey) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("Get(%q): %v, want ErrInvalidKey", key, err)
		}
		if err := c.s.Delete(ctx, key); !errors.Is(err, replica.ErrInvalidKey) {
			t.Errorf("Delete(%q): %v, want ErrInvalidKey", key, err)
		}
	}
	for _, prefix := range []string{"/abs", c.root + "a//", c.root + "../", c.root + "a\\", "\x00", c.root + replica.ReservedPrefix} {
		if _, err := c.s.List(ctx, prefix); !errors.Is(err, replica.ErrInvalidKey) {
			t.Errorf("List(%q): %v, want ErrInvalidKey", prefix, err)
		}
	}
}

// shortReader: a reader that ends before size bytes fails the write with
// io.ErrUnexpectedEOF and leaves no object, or the old one.
func (c *conf) shortReader(t *testing.T) {
	ctx := t.Context()
	for _, n := range []int{1000, BigSize} {
		data := Data(8, n)
		key := c.key("short", fmt.Sprint(n))
		err := c.s.Put(ctx, key, &plainReader{bytes.NewReader(data[:n/2])}, int64(n))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("Put(%q) of %d bytes from a reader of %d: %v, want io.ErrUnexpectedEOF", key, n, n/2, err)
		}
		c.wantNotFound(t, key)
		err = c.s.Create(ctx, key, bytes.NewReader(data[:n/2]), int64(n))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("Create(%q) of %d bytes from a reader of %d: %v, want io.ErrUnexpectedEOF", key, n, n/2, err)
		}
		c.wantNotFound(t, key)
		old := Data(9, 50)
		c.put(t, key, old)
		err = c.s.Put(ctx, key, bytes.NewReader(data[:n-1]), int64(n))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("Put(%q) of %d bytes from a reader of %d: %v, want io.ErrUnexpectedEOF", key, n, n-1, err)
		}
		c.wantData(t, key, old)
	}
}

var errBoom = errors.New("replicatest: the reader failed on purpose")

// failingReader yields data, then fails at offset at. In an
// io.SectionReader it is read in order or at offsets (an io.ReaderAt and
// io.Seeker, as an *os.File is; wrap it in a plainReader to hide that).
type failingReader struct {
	data []byte
	at   int64
}

func (f *failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= f.at {
		return 0, errBoom
	}
	n := copy(p, f.data[off:min(f.at, int64(len(f.data)))])
	if n < len(p) {
		return n, errBoom
	}
	return n, nil
}

// failingReader: a reader failing mid-body fails the write with its error
// and leaves no object, or the old one; a later Create is not blocked.
func (c *conf) failingReader(t *testing.T) {
	ctx := t.Context()
	for _, n := range []int{4 << 20, BigSize} {
		for _, plain := range []bool{false, true} {
			data := Data(10, n)
			key := c.key("failing", fmt.Sprintf("%d-%v", n, plain))
			at := int64(n * 5 / 8)
			reader := func() io.Reader {
				r := io.NewSectionReader(&failingReader{data: data, at: at}, 0, int64(n))
				if plain {
					return &plainReader{r}
				}
				return r
			}
			if err := c.s.Create(ctx, key, reader(), int64(n)); !errors.Is(err, errBoom) {
				t.Fatalf("Create(%q) from a reader failing at %d of %d: %v, want the reader's error", key, at, n, err)
			}
			c.wantNotFound(t, key)
			old := Data(11, 64)
			if err := c.s.Create(ctx, key, bytes.NewReader(old), int64(len(old))); err != nil {
				t.Fatalf("Create(%q) after a failed one: %v", key, err)
			}
			if err := c.s.Put(ctx, key, reader(), int64(n)); !errors.Is(err, errBoom) {
				t.Fatalf("Put(%q) from a reader failing at %d of %d: %v, want the reader's error", key, at, n, err)
			}
			c.wantData(t, key, old)
		}
	}
}

// readWhileReplaced: a reader opened before a Put of the same key yields
// the old object whole, or fails; never a mix.
func (c *conf) readWhileReplaced(t *testing.T) {
	key := c.key("rwr", "obj")
	a, b := Data(12, 1<<20), Data(13, 1<<20)
	c.put(t, key, a)
	rc, err := c.s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	first := make([]byte, 1000)
	if _, err := io.ReadFull(rc, first); err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}
	c.put(t, key, b)
	rest, err := io.ReadAll(rc)
	if err == nil && !bytes.Equal(append(first, rest...), a) {
		t.Fatalf("a reader of %q opened before a Put yielded %d bytes that are not the old object", key, len(first)+len(rest))
	}
	c.wantData(t, key, b)
}

// cancelingReader cancels a context once it has yielded at bytes, and
// goes on yielding. It is an io.ReaderAt and io.Seeker too.
type cancelingReader struct {
	br     *bytes.Reader
	at     int64
	cancel context.CancelFunc
}

func (c *cancelingReader) Read(p []byte) (int, error) {
	if c.br.Size()-int64(c.br.Len()) >= c.at {
		c.cancel()
	}
	return c.br.Read(p)
}

func (c *cancelingReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= c.at {
		c.cancel()
	}
	return c.br.ReadAt(p, off)
}

func (c *cancelingReader) Seek(off int64, whence int) (int64, error) { return c.br.Seek(off, whence) }

func (c *conf) cancel(t *testing.T) {
	done, cancel := context.WithCancel(t.Context())
	cancel()
	key := c.key("cancel", "obj")
	data := Data(14, BigSize)
	wantCanceled := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with a canceled context: %v, want context.Canceled", what, err)
		}
	}
	wantCanceled("Put", c.s.Put(done, key, bytes.NewReader(data), int64(len(data))))
	wantCanceled("Create", c.s.Create(done, key, bytes.NewReader(data), int64(len(data))))
	c.wantNotFound(t, key)
	c.put(t, key, data[:100])
	_, err := c.s.Get(done, key)
	wantCanceled("Get", err)
	_, err = c.s.List(done, c.root)
	wantCanceled("List", err)
	wantCanceled("Delete", c.s.Delete(done, key))
	c.wantData(t, key, data[:100])

	// Canceled during the upload: the write fails and the old object stays.
	for _, plain := range []bool{false, true} {
		ctx, cancel := context.WithCancel(t.Context())
		var r io.Reader = &cancelingReader{br: bytes.NewReader(data), at: int64(len(data) / 3), cancel: cancel}
		if plain {
			r = &plainReader{r}
		}
		err := c.s.Put(ctx, key, r, int64(len(data)))
		cancel()
		wantCanceled("Put", err)
		c.wantData(t, key, data[:100])
	}

	// Canceled while reading: the reader fails rather than ending early.
	c.put(t, key, data)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	rc, err := c.s.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 1000)); err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}
	cancel()
	rest, err := io.ReadAll(rc)
	if err == nil {
		t.Fatalf("reading %q after cancel yielded the remaining %d bytes with no error", key, len(rest))
	}
}
