package caddymodule

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// access(2) modes.
const (
	accessR = 4
	accessW = 2
	accessX = 1
)

// dataDirEntries are what the engine creates in data_dir and must later
// open read-write (native/STORAGE_FORMAT.md).
var dataDirEntries = []string{"LOCK", "streams.db", "streams.db/data.mdb", "streams.db/lock.mdb", "segments"}

// checkDataDir tells, without creating or opening anything, whether this
// process's user can use dir as data_dir: an existing dir must be writable
// and so must what the engine keeps in it (a LOCK or streams.db left by
// another user, e.g. root running the server once, is named); a missing one
// must be creatable, judged by its nearest existing ancestor. The error
// names the path and the user.
func checkDataDir(dir string) error {
	who := processUser()
	p := dir
	for {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("data_dir %s: %s is not a directory", dir, p)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("data_dir %s: user %s cannot reach it: %w", dir, who, err)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return fmt.Errorf("data_dir %s: no existing ancestor", dir)
		}
		p = parent
	}
	if err := canAccess(p, accessW|accessX); err != nil {
		if p == dir {
			return fmt.Errorf("data_dir %s is not writable by user %s: %w", dir, who, err)
		}
		return fmt.Errorf("data_dir %s does not exist and user %s cannot create it: %s is not writable: %w", dir, who, p, err)
	}
	if p != dir {
		return nil
	}
	for _, name := range dataDirEntries {
		entry := filepath.Join(dir, name)
		fi, err := os.Lstat(entry)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("data_dir %s: user %s cannot reach %s: %w", dir, who, entry, err)
		}
		mode := uint32(accessR | accessW)
		if fi.IsDir() {
			mode |= accessX
		}
		if err := canAccess(entry, mode); err != nil {
			return fmt.Errorf("data_dir %s: %s is not writable by user %s (owned by uid %d): %w", dir, entry, who, ownerUID(fi), err)
		}
	}
	return nil
}

// processUser names this process's user as `name (uid N)`.
func processUser() string {
	uid := os.Getuid()
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("%s (uid %d)", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}
