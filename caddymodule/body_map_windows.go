//go:build windows

package caddymodule

import (
	"fmt"
	"syscall"
	"unsafe"
)

// Windows has no mmap: VirtualAlloc gives the same zero-filled private
// pages, physically backed only once written (the commit is charged
// against the commit limit at once; Windows has no MAP_NORESERVE).
var (
	kernel32         = syscall.NewLazyDLL("kernel32.dll")
	procVirtualAlloc = kernel32.NewProc("VirtualAlloc")
	procVirtualFree  = kernel32.NewProc("VirtualFree")
)

const (
	memCommit     = 0x1000
	memReserve    = 0x2000
	memRelease    = 0x8000
	pageReadWrite = 0x04
)

func mapAnonymous(n int) ([]byte, error) {
	addr, _, err := procVirtualAlloc.Call(0, uintptr(n), memCommit|memReserve, pageReadWrite)
	if addr == 0 {
		return nil, fmt.Errorf("VirtualAlloc: %w", err)
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(addr)), n), nil
}

func unmapAnonymous(m []byte) {
	if len(m) > 0 {
		_, _, _ = procVirtualFree.Call(uintptr(unsafe.Pointer(&m[0])), 0, memRelease)
	}
}
