package flags

import "testing"

func TestNames(t *testing.T) {
	names := []string{"a", "b", "c"}
	for set, want := range map[uint8]string{0: "none", 1: "a", 2: "b", 5: "a|c", 7: "a|b|c", 8: "none", 9: "a"} {
		if got := Names(set, names); got != want {
			t.Errorf("Names(%b) = %q, want %q", set, got, want)
		}
	}
}
