package powerload

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Disk is a filesystem that can lose power under a running child.
type Disk interface {
	// Dir is where the DBs live.
	Dir() string
	// Cut makes the filesystem lose power now: from here on nothing the
	// child does reaches the disk.
	Cut() error
	// Restart reboots after the cut, once the child is dead: the
	// filesystem comes back with what it kept (journal replay, or the
	// power-cut model's choice).
	Restart() error
}

// Figures count what the rounds did.
type Figures struct {
	Rounds   int // power cuts
	Acked    int // saves acknowledged before a cut
	Lost     int // rounds that lost an acknowledged save (must be 0)
	Wrong    int // rounds that recovered wrong data (must be 0)
	InFlight int // rounds that recovered a save not acknowledged before the cut
	Retained int // retained snapshots checked value by value
	MapKeys  int // Map keys checked, in current and retained snapshots
}

func (f Figures) String() string {
	return fmt.Sprintf("%d rounds through the kernel, %d crash states, %d saves acknowledged, %d acknowledged saves lost, %d wrong data, %d recovered the in-flight save, %d retained snapshots checked, %d Map keys checked key by key",
		f.Rounds, f.Rounds, f.Acked, f.Lost, f.Wrong, f.InFlight, f.Retained, f.MapKeys)
}

// Rig runs rounds: one child, one power cut at a random moment, one
// reboot and check.
type Rig struct {
	Disk Disk
	Seed int64 // the workloads' seed, for the whole run
	// MaxDelay bounds the random moment of the cut after the child
	// starts (it may fall in the child's Open, its recovery).
	MaxDelay time.Duration
	Figures  Figures

	rng    *rand.Rand
	models map[string]*Model
	last   map[string]int // the step each workload's DB recovered last
}

// NewRig returns a rig on disk; seed drives the workloads and the
// moments of the cuts.
func NewRig(disk Disk, seed int64) *Rig {
	return &Rig{Disk: disk, Seed: seed, MaxDelay: 300 * time.Millisecond,
		rng: rand.New(rand.NewPCG(uint64(seed), 1)), models: map[string]*Model{}, last: map[string]int{}}
}

// Round runs workload w once: child, cut, reboot, check. An error is a
// broken invariant (counted in Figures) or a broken rig.
func (r *Rig) Round(w *Workload) error {
	dir := filepath.Join(r.Disk.Dir(), w.Name)
	cmd := Command(dir, w, r.Seed)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	var (
		mu    sync.Mutex
		acked = -1 // the last step acknowledged so far
	)
	done, err := StartChild(cmd, func(k, _ uint64) {
		mu.Lock()
		acked = int(k)
		mu.Unlock()
	})
	if err != nil {
		return err
	}
	within := r.MaxDelay
	if w.CutWithin > 0 {
		within = w.CutWithin
	}
	time.Sleep(time.Duration(r.rng.Int64N(int64(within))))
	mu.Lock()
	before := acked // acknowledged before the cut began
	mu.Unlock()
	cutErr := r.Disk.Cut()
	cmd.Process.Kill()
	<-done
	cmd.Wait()
	if cutErr != nil {
		return fmt.Errorf("power cut: %w", cutErr)
	}
	if err := r.Disk.Restart(); err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	r.Figures.Rounds++
	floor := r.last[w.Name] // what an earlier round recovered
	if before >= 0 {
		r.Figures.Acked += before - floor
		floor = before
	}
	ceil := max(acked, floor) + 1 // the save in flight, at most
	k, err := r.check(dir, w, floor, ceil)
	if err != nil {
		return fmt.Errorf("%s: %w (child's stderr: %q)", w.Name, err, lastLines(stderr.String(), 3))
	}
	if before >= 0 && k > before {
		r.Figures.InFlight++
	}
	r.last[w.Name] = k
	return nil
}

// check opens the rebooted DB, as the next run of the program would, and
// checks that it recovered a step from floor to ceil with exactly that
// step's values, and that every retained snapshot holds its step's.
func (r *Rig) check(dir string, w *Workload, floor, ceil int) (int, error) {
	m := r.models[w.Name]
	if m == nil {
		m = NewModel(w, r.Seed)
		r.models[w.Name] = m
	}
	db, st, err := w.open(dir)
	if err != nil {
		r.Figures.Wrong++
		return 0, fmt.Errorf("recovery failed: %w", err)
	}
	defer db.Close()
	k := st.step.Get()
	if k < floor {
		r.Figures.Lost++
		return 0, fmt.Errorf("I1: recovered step %d, but step %d was acknowledged before the power cut", k, floor)
	}
	if k > ceil {
		r.Figures.Wrong++
		return 0, fmt.Errorf("recovered step %d, but no step after %d was ever saved", k, ceil-1)
	}
	if err := st.check(r.Seed, m.At(k)); err != nil {
		r.Figures.Wrong++
		return 0, fmt.Errorf("I2: %w", err)
	}
	r.Figures.MapKeys += m.At(k).mapKeys()
	snaps, err := db.Snapshots()
	if err != nil {
		return 0, err
	}
	for _, s := range snaps[:max(len(snaps)-1, 0)] {
		if err := db.ReloadFrom(s.ID); err != nil {
			r.Figures.Wrong++
			return 0, fmt.Errorf("retained snapshot %d: %w", s.ID, err)
		}
		old := st.step.Get()
		if old >= k {
			r.Figures.Wrong++
			return 0, fmt.Errorf("retained snapshot %d holds step %d, current %d", s.ID, old, k)
		}
		if err := st.check(r.Seed, m.At(old)); err != nil {
			r.Figures.Wrong++
			return 0, fmt.Errorf("retained snapshot %d: %w", s.ID, err)
		}
		r.Figures.MapKeys += m.At(old).mapKeys()
		r.Figures.Retained++
	}
	return k, nil
}

func lastLines(s string, n int) string {
	lines := bytes.Split(bytes.TrimSpace([]byte(s)), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte(" | ")))
}

// Rounds returns how many rounds a test runs: the environment variable
// name's value, or def when it is not set.
func Rounds(t testing.TB, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a number of rounds", name, s)
	}
	return n
}

// Run runs rounds rounds on disk, of the workloads in turn, seeded with
// seed, and prints the figures after what.
func Run(t testing.TB, disk Disk, seed int64, rounds int, what string) {
	t.Logf("seed %d", seed)
	rig := NewRig(disk, seed)
	for i := 0; i < rounds; i++ {
		w := Workloads[i%len(Workloads)]
		if err := rig.Round(w); err != nil {
			t.Fatalf("round %d (seed %d): %v", i, seed, err)
		}
	}
	fmt.Printf("%s figures: %s\n", what, rig.Figures)
}
