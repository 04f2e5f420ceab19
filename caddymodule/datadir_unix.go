//go:build unix

package caddymodule

import (
	"io/fs"
	"syscall"
)

// canAccess is access(2): whether this process's real user may use path
// with mode (accessR|accessW|accessX).
func canAccess(path string, mode uint32) error { return syscall.Access(path, mode) }

func ownerUID(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Uid)
	}
	return -1
}
