//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package webhook

import (
	"fmt"
	"os"
)

// withDirLock: no flock here; creation and rotation are not serialized
// between processes (run `webhook-key rotate` one at a time).
func withDirLock(dir string, fn func() error) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("webhook keys: create %s: %w", dir, err)
	}
	return fn()
}
