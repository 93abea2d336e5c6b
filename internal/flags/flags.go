// Package flags names sets of bit flags, for the operation kinds of the
// fault injectors.
package flags

import "strings"

// Names returns the names of the flags set in set, joined by "|", where
// bit i is named names[i]; "none" for an empty set. Bits without a name
// are left out.
func Names[T ~uint8 | ~uint16 | ~uint32 | ~uint64](set T, names []string) string {
	var on []string
	for i, n := range names {
		if set&(1<<i) != 0 {
			on = append(on, n)
		}
	}
	if len(on) == 0 {
		return "none"
	}
	return strings.Join(on, "|")
}
