package replica_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/instadump/instadump/replica"
)

func TestCheckKey(t *testing.T) {
	good := []string{"a", "a/b/000017.seg", ".hidden", "..x", "x..", "a b/ü", strings.Repeat("k", replica.MaxKeyLen), ".instadumpx"}
	bad := []string{"", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "a\\b", "a\x00", "a\nb", "\xff",
		strings.Repeat("k", replica.MaxKeyLen+1), ".instadump-tmp-1", "a/.instadump-"}
	for _, k := range good {
		if err := replica.CheckKey(k); err != nil {
			t.Errorf("CheckKey(%q): %v", k, err)
		}
		if err := replica.CheckPrefix(k); err != nil {
			t.Errorf("CheckPrefix(%q): %v", k, err)
		}
	}
	for _, k := range bad {
		if err := replica.CheckKey(k); !errors.Is(err, replica.ErrInvalidKey) {
			t.Errorf("CheckKey(%q): %v, want ErrInvalidKey", k, err)
		}
	}
	for _, p := range []string{"", "a/", "a/.", "a/..", "a/b", "."} {
		if err := replica.CheckPrefix(p); err != nil {
			t.Errorf("CheckPrefix(%q): %v", p, err)
		}
	}
	for _, p := range []string{"/", "/a", "a//", "../", "a/../", "a\\", "\x00", ".instadump-", "a/.instadump-t"} {
		if err := replica.CheckPrefix(p); !errors.Is(err, replica.ErrInvalidKey) {
			t.Errorf("CheckPrefix(%q): %v, want ErrInvalidKey", p, err)
		}
	}
}
