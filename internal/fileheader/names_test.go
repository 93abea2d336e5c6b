package fileheader_test

import (
	"testing"

	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

// The numbered names of segment and manifest files: six or more digits,
// nothing else around them but the kind's own prefix or suffix.
func TestFileNames(t *testing.T) {
	for _, c := range []struct {
		prefix, suffix string
		name           func(uint64) string
		parse          func(string) (uint64, bool)
	}{
		{"", ".seg", segment.FileName, segment.ParseFileName},
		{"MANIFEST-", "", manifest.FileName, manifest.ParseFileName},
	} {
		if got, want := c.name(17), c.prefix+"000017"+c.suffix; got != want {
			t.Fatalf("FileName: %q, want %q", got, want)
		}
		for digits, want := range map[string]uint64{"000017": 17, "1234567": 1234567, "000000": 0} {
			if n, ok := c.parse(c.prefix + digits + c.suffix); !ok || n != want {
				t.Fatalf("%s%s%s: %d %v", c.prefix, digits, c.suffix, n, ok)
			}
		}
		for _, bad := range []string{
			c.prefix + "17" + c.suffix, c.prefix + "00001x" + c.suffix, c.prefix + "+00017" + c.suffix,
			c.prefix + "-00017" + c.suffix, c.prefix + "000017" + c.suffix + ".tmp", "x" + c.prefix + "000017" + c.suffix,
			c.prefix + "99999999999999999999" + c.suffix, // past uint64
			"000017.broken", "manifest-000017", "MANIFEST-000017.seg",
		} {
			if _, ok := c.parse(bad); ok {
				t.Fatalf("%s parsed", bad)
			}
		}
	}
}
