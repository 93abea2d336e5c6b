package engine

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/instadump/instadump/internal/vfs"
)

// readAheadDB writes n states of size bytes each into a new DB on m and
// returns their names, sorted, and values.
func readAheadDB(t *testing.T, m FS, n, size int) ([]string, map[string]string) {
	t.Helper()
	e := open(t, m, Options{})
	vals := map[string]string{}
	var kv []string
	for i := range n {
		name := fmt.Sprintf("s%03d", i)
		vals[name] = strings.Repeat(string(rune('a'+i%26)), size)
		kv = append(kv, name, vals[name])
	}
	commit(t, e, kv...)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range vals {
			if !yield(n) {
				return
			}
		}
	})
	return names, vals
}

// Every value read while the read-ahead runs is the value stored,
// whether it was read ahead, under way or not reached yet, whatever the
// order and concurrency of the reads; a budget smaller than one value
// still reads one at a time.
func TestReadAheadReadsWhatIsStored(t *testing.T) {
	m := vfs.NewMem()
	names, vals := readAheadDB(t, m, 200, 3000)
	for _, budget := range []int64{1, 10_000, 1 << 20} {
		e := open(t, m, Options{ReadAhead: budget})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := w; i < len(names); i += 4 {
					n := names[len(names)-1-i] // against the read-ahead's order
					if w%2 == 0 {
						n = names[i]
					}
					if got := read(t, e, e.cur[n]); got != vals[n] {
						t.Errorf("budget %d: %s: %d bytes, want %d", budget, n, len(got), len(vals[n]))
					}
				}
			})
		}
		wg.Wait()
		e.Close()
	}
}

// The read-ahead holds at most its budget of unclaimed bytes (one value
// more than it would not start), hands each value over once, and stops
// at the first commit, forgetting what it holds.
func TestReadAheadBoundedAndStoppedByCommit(t *testing.T) {
	m := vfs.NewMem()
	names, vals := readAheadDB(t, m, 50, 4000)
	e := open(t, m, Options{ReadAhead: 10_000})
	defer e.Close()
	ra := e.ra
	held := func() int64 {
		ra.mu.Lock()
		defer ra.mu.Unlock()
		return ra.held
	}
	for deadline := time.Now().Add(10 * time.Second); held() != 8000; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the read-ahead holds %d bytes, want two values of 4000 (budget 10000)", held())
		}
	}
	time.Sleep(20 * time.Millisecond) // it would go on now if it ignored the budget
	if h := held(); h != 8000 {
		t.Fatalf("%d bytes held, budget 10000", h)
	}
	if got := read(t, e, e.cur[names[0]]); got != vals[names[0]] {
		t.Fatalf("%s: wrong value", names[0])
	}
	for deadline := time.Now().Add(10 * time.Second); held() != 8000; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after a claim, the read-ahead holds %d bytes, want it to read one more value", held())
		}
	}
	commit(t, e, "new", "x")
	ra.mu.Lock()
	stopped := ra.stopped && ra.slots == nil
	ra.mu.Unlock()
	if !stopped {
		t.Fatalf("the read-ahead runs on after a commit")
	}
	if got := read(t, e, e.cur[names[1]]); got != vals[names[1]] {
		t.Fatalf("%s after the commit: wrong value", names[1])
	}
}
