//go:build unix

package caddymodule

import "syscall"

// mapAnonymous maps n bytes of private anonymous memory. MAP_NORESERVE keeps
// an untouched reservation from counting against the system's commit limit.
// (MAP_ANON: the spelling Linux and macOS share.)
func mapAnonymous(n int) ([]byte, error) {
	return syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
}

func unmapAnonymous(m []byte) { _ = syscall.Munmap(m) }
