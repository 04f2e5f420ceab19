//go:build linux

package caddymodule

import (
	"net"
	"syscall"
	"unsafe"
)

// Send buffers for direct reads (docs/large-reads-and-durable-appends.md,
// third round).
//
// On a short round trip (loopback, a LAN) the kernel grows a bulk sender's
// send buffer to megabytes: the sender fills it in a few calls, and the
// segments then mostly go out from the receiver's ACK processing, as
// small pieces, at a higher cost per byte for both ends. With a send
// buffer of directSendBuffer the sender transmits its own segments, full
// sized, as the receiver drains them (the Rust server sets 64 KiB on every
// connection). A fixed send buffer caps a connection at buffer / round
// trip, so it is set only on connections whose smoothed round trip is at
// most directShortRTT (then the cap is at least 1 GB/s); elsewhere the
// kernel keeps sizing the buffer itself.
const (
	directSendBuffer = 256 << 10 // SO_SNDBUF asked for; Linux doubles it for overhead
	directShortRTT   = 500       // µs
	tcpInfoLen       = unsafe.Sizeof(syscall.TCPInfo{})
)

// limitSendBuffer sets conn's send buffer to directSendBuffer when its
// round trip is short (see above). The setting stays with the connection:
// whatever it sends next is at least as well served by it.
func limitSendBuffer(conn net.Conn) {
	raw, err := rawSocketOf(conn)
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		var info syscall.TCPInfo
		n := uint32(tcpInfoLen)
		_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
			uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&n)), 0)
		if errno != 0 || n < uint32(unsafe.Offsetof(info.Rtt)+4) || info.Rtt == 0 || info.Rtt > directShortRTT {
			return
		}
		_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, directSendBuffer)
	})
}
