//go:build !windows

package webhook

import (
	"fmt"
	"os"
)

// syncDir makes a rename inside dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("webhook keys: open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("webhook keys: fsync %s: %w", dir, err)
	}
	return nil
}
