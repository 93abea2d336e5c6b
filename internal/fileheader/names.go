package fileheader

import (
	"fmt"
	"strconv"
	"strings"
)

// FileName returns prefix, num as six or more decimal digits, then
// suffix: the names of segment (NNNNNN.seg) and manifest
// (MANIFEST-NNNNNN) files.
func FileName(prefix string, num uint64, suffix string) string {
	return fmt.Sprintf("%s%06d%s", prefix, num, suffix)
}

// ParseFileName returns the number in a name made by FileName with the
// same prefix and suffix. Anything else (fewer than six digits, a sign,
// other characters) is not such a name.
func ParseFileName(name, prefix, suffix string) (uint64, bool) {
	digits, ok := strings.CutPrefix(name, prefix)
	if ok {
		digits, ok = strings.CutSuffix(digits, suffix)
	}
	if !ok || len(digits) < 6 || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil
}
