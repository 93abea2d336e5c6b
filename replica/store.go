package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Store is an object store holding replicated snapshots: a flat namespace
// of immutable objects under keys like "a/b/000017.seg" (see CheckKey for
// the rules a key follows).
//
// Every method honours ctx: once it is done, a call returns an error that
// wraps ctx.Err(). A Store is safe for concurrent use. Errors wrap
// ErrExists, ErrNotFound, ErrInvalidKey, ErrUnavailable or
// ErrMisconfigured where one of these is the cause; test with errors.Is.
type Store interface {
	// Put writes the object key with size bytes read from r, replacing any
	// object of that key. It reads exactly size bytes: a reader that ends
	// sooner is an error wrapping io.ErrUnexpectedEOF, and bytes after the
	// first size are not read. A reader's error is returned wrapped.
	// Readers never see part of an object: until Put returns nil, Get
	// returns the old object (or ErrNotFound), and a failed Put leaves the
	// old object in place.
	Put(ctx context.Context, key string, r io.Reader, size int64) error

	// Create writes key as Put does, but only if no object has that key (a
	// conditional create: S3's If-None-Match: *). If one does, it returns
	// an error wrapping ErrExists and changes nothing. Of many Creates of
	// one key racing each other, in this process or others, exactly one
	// succeeds. Like any write whose answer can be lost, a Create that
	// fails with another error may have created the object all the same;
	// reading it back tells.
	Create(ctx context.Context, key string, r io.Reader, size int64) error

	// Get opens key for reading. It returns an error wrapping ErrNotFound
	// if there is no such object. The caller must Close the reader. The
	// reader yields exactly the object's bytes; a read error (the
	// connection lost for good, ctx done) is returned by Read, never
	// replaced by a silent early EOF.
	Get(ctx context.Context, key string) (io.ReadCloser, error)

	// List returns the objects whose keys start with prefix, sorted by key
	// (byte order). The prefix is a plain string prefix: "a/b" matches
	// "a/b/1" and "a/bc". An empty prefix lists every object.
	List(ctx context.Context, prefix string) ([]Object, error)

	// Delete removes key. Removing an absent key is not an error.
	Delete(ctx context.Context, key string) error

	// String describes the location for logs and errors, such as
	// "directory /mnt/replica" or "s3://bucket/prefix at host:port". It
	// never contains a secret.
	String() string
}

// Object is an object in a Store.
type Object struct {
	Key  string // its key
	Size int64  // its length in bytes
}

// Errors. Test for them with errors.Is: the errors a Store returns wrap
// them and add what failed, where, and what to do.
var (
	// ErrNotFound: there is no object with that key.
	ErrNotFound = errors.New("replica: object not found")

	// ErrExists: Create found an object with that key already.
	ErrExists = errors.New("replica: object already exists")

	// ErrInvalidKey: a key or prefix breaks the rules of CheckKey or
	// CheckPrefix.
	ErrInvalidKey = errors.New("replica: invalid key")

	// ErrUnavailable: the store could not be reached or failed in a way
	// that may pass: a refused or reset connection, a timeout, a server
	// error (HTTP 5xx), throttling. A store that retries has already done
	// so; the caller may try again later.
	ErrUnavailable = errors.New("replica: store unavailable")

	// ErrMisconfigured: the store refused the request as configured, and
	// trying again will not help: wrong credentials, a missing permission,
	// a bucket or directory that does not exist, a server lacking a needed
	// feature, a bad configuration value. The error says what to check.
	ErrMisconfigured = errors.New("replica: store misconfigured")
)

// ReservedPrefix begins the names a store gives its own temporary files
// (a directory store writes ".instadump-tmp-*" beside an object before it
// renames it into place). No key segment may begin with it, so no key can
// collide with a temporary file, and List never shows one.
const ReservedPrefix = ".instadump-"

// MaxKeyLen is the longest key, in bytes: S3's limit on an object name.
// A store that adds its own prefix may accept less.
const MaxKeyLen = 1024

// CheckKey reports whether key is a valid key, returning nil or an error
// wrapping ErrInvalidKey that says why. A key is 1 to MaxKeyLen bytes of
// valid UTF-8, made of segments separated by "/". Every segment is
// non-empty (so no leading, trailing or doubled "/"), is neither "." nor
// "..", does not begin with ReservedPrefix, and contains no backslash and
// no control character (such as NUL).
// These rules keep a key meaning the same object in every store, a
// directory included: no key can name a path outside its store.
func CheckKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: the key is empty", ErrInvalidKey)
	}
	if err := checkChars(key); err != nil {
		return err
	}
	for seg := range strings.SplitSeq(key, "/") {
		if err := checkSegment(key, seg); err != nil {
			return err
		}
	}
	return nil
}

// CheckPrefix reports whether prefix is a valid List prefix, returning nil
// or an error wrapping ErrInvalidKey. A prefix is empty or the start of a
// valid key: it follows the rules of CheckKey, except that it may end
// with "/" and its last segment may be any start of a valid segment
// (such as "", "." or "..", which begin "b", ".b" and "..b").
func CheckPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := checkChars(prefix); err != nil {
		return err
	}
	segs := strings.Split(prefix, "/")
	for i, seg := range segs {
		if i == len(segs)-1 && !strings.HasPrefix(seg, ReservedPrefix) {
			// Any start of a valid segment: "a/", "a/." and "a/.."
			// begin "a/b", "a/.b" and "a/..b".
			continue
		}
		if err := checkSegment(prefix, seg); err != nil {
			return err
		}
	}
	return nil
}

func checkChars(key string) error {
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: the key %.40q... is %d bytes long, more than %d", ErrInvalidKey, key, len(key), MaxKeyLen)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w: the key %q is not valid UTF-8", ErrInvalidKey, key)
	}
	for _, c := range key {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: the key %q contains the control character %U", ErrInvalidKey, key, c)
		}
		if c == '\\' {
			return fmt.Errorf("%w: the key %q contains a backslash (use / between segments)", ErrInvalidKey, key)
		}
	}
	return nil
}

func checkSegment(key, seg string) error {
	switch seg {
	case "":
		return fmt.Errorf("%w: the key %q has an empty segment (a leading, trailing or doubled /)", ErrInvalidKey, key)
	case ".", "..":
		return fmt.Errorf("%w: the key %q has a %q segment", ErrInvalidKey, key, seg)
	}
	if strings.HasPrefix(seg, ReservedPrefix) {
		return fmt.Errorf("%w: the key %q has a segment beginning %q, which stores reserve for their temporary files", ErrInvalidKey, key, ReservedPrefix)
	}
	return nil
}
