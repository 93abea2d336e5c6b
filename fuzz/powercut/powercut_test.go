package powercut

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/instadump/instadump/fuzz/internal/powerload"
)

// The real engine (instadump.Open on the mount, so vfs.OS) runs in a
// child process on the FUSE filesystem, which this test process serves:
// the child can then be stopped at any instruction, as a power cut stops
// a machine, while the daemon, which plays the disk, decides what
// survives. A cut fails every request from then on, the child is killed,
// the daemon keeps what the round's CutOptions draw (every other round
// nothing unsynced at all, the others a seeded share of the name
// operations and of the unsynced blocks, writes torn at any byte), and
// the filesystem is unmounted and mounted again from the backing
// directory. Then the checks of the ext4 test: I1, I2 value by value, I3,
// every retained snapshot. This loses what ext4's ordered mode never
// does: unsynced directory entries, file data that was never fsynced.
// INSTADUMP_FUSE_ROUNDS sets the rounds (root only).

func TestMain(m *testing.M) {
	if os.Getenv(powerload.ChildEnv) == "power" {
		os.Exit(powerload.Child())
	}
	os.Exit(m.Run())
}

// prefix names the temp dirs (and so the mounts) the tests make, with
// the pid after it, so that a later run can sweep up a killed one's.
const prefix = "instadump-powercut-"

type fuseDisk struct {
	back   string
	mnt    string
	fs     *FS
	srv    *fuse.Server
	rng    *rand.Rand
	rounds int
}

func newFuseDisk(t *testing.T, seed int64) *fuseDisk {
	if os.Geteuid() != 0 {
		t.Skip("mounting a FUSE filesystem here needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	powerload.SweepStale(prefix)
	top, err := os.MkdirTemp("", prefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	d := &fuseDisk{back: filepath.Join(top, "back"), mnt: filepath.Join(top, "mnt"), rng: rand.New(rand.NewPCG(uint64(seed), 3))}
	for _, dir := range []string{d.back, d.mnt} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.mount(); err != nil {
		t.Skipf("cannot mount a FUSE filesystem here: %v", err)
	}
	t.Cleanup(func() {
		if d.srv != nil {
			d.fs.Cut()
			if err := d.srv.Unmount(); err != nil {
				t.Errorf("unmount %s: %v", d.mnt, err)
			}
		}
	})
	return d
}

func (d *fuseDisk) mount() error {
	fsys, err := Load(d.back)
	if err != nil {
		return err
	}
	srv, err := fuse.NewServer(fsys, d.mnt, &fuse.MountOptions{
		DirectMountStrict:  true, // as root, no fusermount needed
		DisableReadDirPlus: true,
		FsName:             "powercut",
		Name:               "powercut",
	})
	if err != nil {
		return err
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		srv.Unmount()
		return err
	}
	d.fs, d.srv = fsys, srv
	return nil
}

func (d *fuseDisk) Dir() string { return d.mnt }

func (d *fuseDisk) Cut() error {
	d.fs.Cut()
	return nil
}

// cutOptions draws what the next cut keeps: nothing unsynced every other
// cut, a seeded subset the others.
func (d *fuseDisk) cutOptions() CutOptions {
	d.rounds++
	if d.rounds%2 == 1 {
		return CutOptions{}
	}
	return CutOptions{KeepNames: d.rng.Float64(), KeepUnsynced: d.rng.Float64(), Tear: d.rng.Float64() / 2, Seed: d.rng.Int64()}
}

func (d *fuseDisk) Restart() error {
	if err := d.fs.Settle(d.cutOptions()); err != nil {
		return err
	}
	var err error
	for i := 0; i < 50; i++ { // EBUSY while a killed child's files close
		if err = d.srv.Unmount(); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("unmount %s: %w", d.mnt, err)
	}
	d.srv = nil
	return d.mount()
}

// Every write goes through the daemon (no passthrough, no page cache): a
// write without fsync is gone after a cut, a synced one is there, and so
// are only the names whose directory was synced.
func TestUnsyncedWriteIsLost(t *testing.T) {
	d := newFuseDisk(t, 1)
	p := func(name string) string { return filepath.Join(d.mnt, name) }
	f, err := os.Create(p("synced"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("durable")
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	dir, err := os.Open(d.mnt)
	if err != nil {
		t.Fatal(err)
	}
	if err := dir.Sync(); err != nil {
		t.Fatal(err)
	}
	dir.Close()
	writes, _ := d.fs.Requests()
	f.WriteString(" and more") // never synced
	f.Close()
	if err := os.WriteFile(p("unsynced"), []byte("lost"), 0o644); err != nil {
		t.Fatal(err)
	}
	g, _ := os.Create(p("no-dir-sync"))
	g.WriteString("data synced, name not")
	g.Sync()
	g.Close()
	if now, _ := d.fs.Requests(); now == writes {
		t.Fatal("the writes never reached the daemon")
	}
	if got, want := d.fs.UnsyncedNames(), []string{"create unsynced", "create no-dir-sync"}; !slices.Equal(got, want) {
		t.Fatalf("unsynced name operations %q, want %q", got, want)
	}
	if b, _ := os.ReadFile(p("synced")); string(b) != "durable and more" {
		t.Fatalf("reads before the cut: %q", b)
	}
	d.Cut()
	d.rounds = 0 // the next cut keeps nothing unsynced
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p("synced")); err != nil || string(b) != "durable" {
		t.Fatalf("after the cut: %q, %v", b, err)
	}
	for _, name := range []string{"unsynced", "no-dir-sync"} {
		if _, err := os.Stat(p(name)); !os.IsNotExist(err) {
			t.Fatalf("%s survived the cut: %v", name, err)
		}
	}
}

func TestCrashFusePowerCut(t *testing.T) {
	rounds := powerload.Rounds(t, "INSTADUMP_FUSE_ROUNDS", 40)
	seed := time.Now().UnixNano()
	powerload.Run(t, newFuseDisk(t, seed), seed, rounds, "FUSE power-cut")
}
