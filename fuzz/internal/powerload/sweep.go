package powerload

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// SweepStale unmounts, detaches and removes what an earlier test run
// that died left behind: mounts, loop devices and temp dirs whose path
// holds prefix followed by the pid of a process that is gone. Test
// runs name what they make prefix+PID+"-...".
func SweepStale(prefix string) {
	stale := func(path string) bool {
		i := strings.Index(path, prefix)
		if i < 0 {
			return false
		}
		pidStr, _, _ := strings.Cut(path[i+len(prefix):], "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			return false
		}
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}
	if f, err := os.Open("/proc/self/mounts"); err == nil {
		var mounts []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fields := strings.Fields(sc.Text()); len(fields) > 1 && stale(fields[1]) {
				mounts = append(mounts, fields[1])
			}
		}
		f.Close()
		for i := len(mounts) - 1; i >= 0; i-- { // the innermost first
			syscall.Unmount(mounts[i], syscall.MNT_DETACH)
		}
	}
	if _, err := exec.LookPath("losetup"); err == nil {
		if out, err := exec.Command("losetup", "-a").Output(); err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				if dev, _, ok := strings.Cut(line, ":"); ok && stale(line) {
					exec.Command("losetup", "-d", dev).Run()
				}
			}
		}
	}
	if dirs, err := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*")); err == nil {
		for _, dir := range dirs {
			if stale(dir) {
				os.RemoveAll(dir)
			}
		}
	}
}
