package s3

import (
	"errors"
	"testing"
	"time"
)

// What the tests of package s3_test use of the package's insides: they
// are outside it to import internal/versitygw, which imports it.
var (
	NewTestStore = newTestStore
	Fast         = fast
)

// newTestStore returns the store of cfg, closed when t ends.
func newTestStore(t testing.TB, cfg Config) *store {
	t.Helper()
	s, err := newStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fast makes retries quick, for tests that exhaust them.
func fast(s *store) *store {
	s.minBackoff, s.maxBackoff = 10*time.Millisecond, 100*time.Millisecond
	return s
}

// Attempts returns how many attempts the operation failing with err made
// (0 if err is not an operation's).
func Attempts(err error) int {
	var oe *opError
	if !errors.As(err, &oe) {
		return 0
	}
	return oe.attempts
}
