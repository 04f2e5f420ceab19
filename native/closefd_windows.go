package native

import "syscall"

// closeFD closes a socket handed to the engine when the engine is gone.
// Adopt is never called on Windows (sse_takeover is Linux only); this keeps
// the package building there.
func closeFD(fd int) { _ = syscall.Closesocket(syscall.Handle(fd)) }
