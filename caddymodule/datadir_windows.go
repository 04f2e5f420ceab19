//go:build windows

package caddymodule

import "io/fs"

// Windows has no access(2) and decides by ACLs, which only an open can
// judge: nothing is refused up front, and an unwritable data_dir fails when
// the engine opens it, with the path in the error.
func canAccess(path string, mode uint32) error { return nil }

// Files have no numeric owner on Windows.
func ownerUID(fs.FileInfo) int64 { return -1 }
