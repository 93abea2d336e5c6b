package fuzz

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/instadump/instadump/fuzz/internal/powerload"
)

// Power loss through the real kernel: ext4 on a loop device, shut down
// mid-save. A child process saves on it (the workloads of powerload,
// round after round on the same DBs); at a random moment the parent shuts
// the filesystem down as a power cut does, dropping the running journal
// transaction (EXT4_IOC_SHUTDOWN with EXT4_GOING_FLAGS_NOLOGFLUSH), kills
// the child, unmounts, mounts again (the journal is replayed), and checks
// the DB against what the child acknowledged before the cut: nothing
// acknowledged is lost (I1), exactly one step's snapshot, value by value
// (I2), no half transfer (I3), and every retained snapshot likewise.
// INSTADUMP_EXT4_ROUNDS sets the rounds (root only).

// EXT4_IOC_SHUTDOWN and its flags, from the kernel's fs/ext4/ext4.h
// (golang.org/x/sys/unix lacks them): _IOR('X', 125, __u32).
const (
	ext4IocShutdown          = 0x8004587d
	ext4GoingFlagsNoLogFlush = 0x2 // don't flush the log nor the data
)

// ext4Prefix names what the test makes (temp dirs, images, mounts), with
// the pid after it, so that a later run can sweep up what a killed one
// left.
const ext4Prefix = "instadump-ext4-"

type ext4Disk struct {
	img   string
	loop  string
	mnt   string
	mount bool
}

func (d *ext4Disk) Dir() string { return d.mnt }

func (d *ext4Disk) Cut() error {
	f, err := os.Open(d.mnt)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := uint32(ext4GoingFlagsNoLogFlush)
	return unix.IoctlSetPointerInt(int(f.Fd()), ext4IocShutdown, int(flags))
}

func (d *ext4Disk) Restart() error {
	if err := d.unmount(); err != nil {
		return err
	}
	return d.doMount()
}

func (d *ext4Disk) doMount() error {
	if err := unix.Mount(d.loop, d.mnt, "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount %s on %s: %w", d.loop, d.mnt, err)
	}
	d.mount = true
	return nil
}

func (d *ext4Disk) unmount() error {
	if !d.mount {
		return nil
	}
	var err error
	for i := 0; i < 50; i++ { // EBUSY while a killed child's files close
		if err = unix.Unmount(d.mnt, 0); err != unix.EBUSY {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("unmount %s: %w", d.mnt, err)
	}
	d.mount = false
	return nil
}

// newExt4Disk makes a sparse 128 MiB image, attaches it to a loop device,
// makes ext4 on it and mounts it; t.Cleanup undoes each step.
func newExt4Disk(t *testing.T) *ext4Disk {
	if os.Geteuid() != 0 {
		t.Skip("loop devices and mounts need root")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("no loop devices here: %v", err)
	}
	powerload.SweepStale(ext4Prefix)
	top, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", ext4Prefix, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	d := &ext4Disk{img: filepath.Join(top, "disk.img"), mnt: filepath.Join(top, "mnt")}
	if err := os.Mkdir(d.mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(d.img, 128<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", d.img).CombinedOutput()
	if err != nil {
		t.Skipf("losetup cannot attach a loop device: %v: %s", err, out)
	}
	d.loop = strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", d.loop).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", d.loop, err, out)
		}
	})
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", d.loop).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	if err := d.doMount(); err != nil {
		t.Skipf("cannot mount ext4 here: %v", err)
	}
	t.Cleanup(func() {
		if err := d.unmount(); err != nil {
			unix.Unmount(d.mnt, unix.MNT_DETACH)
			t.Errorf("%v (detached lazily)", err)
		}
	})
	return d
}

func TestCrashExt4PowerLoss(t *testing.T) {
	rounds := powerload.Rounds(t, "INSTADUMP_EXT4_ROUNDS", 40)
	powerload.Run(t, newExt4Disk(t), time.Now().UnixNano(), rounds, "ext4 power-loss")
}
