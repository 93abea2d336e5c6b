package instadump

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxNameLen is the longest state name, in bytes. A Map's name is at most
// MaxMapNameLen bytes: its parts are stored under longer names.
const (
	MaxNameLen    = 1024
	MaxMapNameLen = 1000
)

// checkName checks the name rule: 1 to max bytes of UTF-8 without
// control characters, so that names print the same in tables, JSON and
// logs.
func checkName(name string, max int) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: the name is empty; want 1 to %d bytes", ErrBadName, max)
	case len(name) > max:
		return fmt.Errorf("%w: %s is too long; want 1 to %d bytes", ErrBadName, quote(name), max) // quote gives the length
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrBadName, quote(name))
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: %s holds the control character %U", ErrBadName, quote(name), r)
		}
	}
	return nil
}

// quote quotes a name for a message, cut at 64 bytes.
func quote(name string) string {
	const max = 64
	if len(name) <= max {
		return strconv.Quote(name)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(name[:cut]), len(name))
}

// quoteAll quotes names for a message: all of a few, the first of many
// with how many more.
func quoteAll(names []string) string {
	const most = 3
	q := make([]string, 0, most)
	for _, n := range names[:min(len(names), most)] {
		q = append(q, quote(n))
	}
	s := strings.Join(q, ", ")
	if len(names) > most {
		s += fmt.Sprintf(" and %d more", len(names)-most)
	}
	return "state " + s
}
