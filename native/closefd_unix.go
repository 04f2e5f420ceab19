//go:build !windows

package native

import "syscall"

// closeFD closes a descriptor handed to the engine when the engine is gone.
func closeFD(fd int) { _ = syscall.Close(fd) }
