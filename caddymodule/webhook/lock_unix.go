//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package webhook

import (
	"fmt"
	"os"
	"syscall"
)

// withDirLock runs fn holding an exclusive flock on dir (created if missing),
// which serializes key-file creation and rotation between processes.
func withDirLock(dir string, fn func() error) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("webhook keys: create %s: %w", dir, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("webhook keys: open %s: %w", dir, err)
	}
	defer d.Close()
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("webhook keys: lock %s: %w", dir, err)
	}
	defer syscall.Flock(int(d.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing unlocks too
	return fn()
}
