package vfs

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
)

// MkdirAllDurable creates dir and any missing parents, each made durable
// by a SyncDir of the directory holding it, top down, so that a crash can
// never lose a directory (and all in it) once this returns nil. The
// directory holding dir is synced even when dir already exists: a process
// that died between creating dir and syncing its parent leaves a name
// that only a later sync makes durable; there, a directory its owner
// lets us search but not read is left unsynced rather than refused.
// (Parents further up that such a process created are taken as they
// are.)
func MkdirAllDurable(fsys FS, dir string) error {
	var missing []string // deepest first
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		_, err := fsys.List(p)
		if err == nil {
			break
		}
		if !IsNotExist(err) {
			return err
		}
		missing = append(missing, p)
		if filepath.Dir(p) == p {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		p := missing[i]
		if err := fsys.MkdirAll(p); err != nil {
			return err
		}
		if err := fsys.SyncDir(filepath.Dir(p)); err != nil {
			return fmt.Errorf("syncing the directory holding %s: %w", p, err)
		}
	}
	if len(missing) == 0 {
		if err := fsys.SyncDir(filepath.Dir(filepath.Clean(dir))); err != nil && !errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("syncing the directory holding %s: %w", dir, err)
		}
	}
	return nil
}
