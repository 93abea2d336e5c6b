// Package testdisk gives tests a real small disk: a tmpfs of a chosen
// size, which fills up as a full disk does (ENOSPC from write, fsync,
// rename).
package testdisk

import (
	"os"
	"syscall"
	"testing"
)

// Tmpfs mounts a tmpfs of the given size (a mount option such as "1m") on
// a new temporary directory, returns the directory, and unmounts it when
// the test ends (failing the test if it cannot). It skips the test, saying why, where that is not
// possible: without root, or where the kernel refuses the mount.
func Tmpfs(t testing.TB, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("unmounting the tmpfs on %s (is a file on it still open?): %v", mnt, err)
		}
	})
	return mnt
}
