//go:build linux

package caddymodule

import (
	"errors"
	"net"
	"sync"
	"syscall"
)

// takeoverSupported: the engine's SSE fan-out runs on epoll.
const takeoverSupported = true

var errNoSocket = errors.New("not a connection whose socket may be written directly")

// dupMu lets one goroutine at a time allocate a descriptor. While the
// kernel grows a process's descriptor table (as connections pile up), every
// allocation sleeps for an RCU grace period, and each goroutine sleeping in
// a system call ties up an OS thread: thousands of connections arriving at
// once would otherwise add dozens of threads. Waiting on a mutex ties up
// none.
var dupMu sync.Mutex

// socketOf returns a close-on-exec duplicate of the connection's socket when
// writing to it directly is the same as writing to the connection: a plain
// TCP or Unix connection, or a PROXY-protocol connection over TCP (Caddy's
// proxy_protocol listener wrapper, github.com/pires/go-proxyproto, passes
// writes through). TLS and unknown wrappers (which may count, limit or
// rewrite bytes) are refused.
func socketOf(c net.Conn) (int, error) {
	raw, err := rawSocketOf(c)
	if err != nil {
		return -1, err
	}
	dupMu.Lock()
	defer dupMu.Unlock()
	fd, dupErr := -1, error(nil)
	err = raw.Control(func(s uintptr) {
		r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, s, syscall.F_DUPFD_CLOEXEC, 0)
		if errno != 0 {
			dupErr = errno
			return
		}
		fd = int(r)
	})
	if err != nil {
		return -1, err
	}
	return fd, dupErr
}

// rawSocketOf is the connection's socket for socketOf and borrowedSocketOf,
// or errNoSocket.
func rawSocketOf(c net.Conn) (syscall.RawConn, error) {
	var sc syscall.Conn
	switch c := c.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	case interface{ TCPConn() (*net.TCPConn, bool) }:
		tc, ok := c.TCPConn()
		if !ok {
			return nil, errNoSocket
		}
		sc = tc
	default:
		return nil, errNoSocket
	}
	return sc.SyscallConn()
}

// borrowedSocketOf returns the connection's own socket descriptor, for
// the same connections as socketOf, to lend to the engine (a kept-alive
// long-poll, AdoptLongPollBorrowed): valid as long as c stays open, which
// the caller guarantees until the engine gives the connection back.
func borrowedSocketOf(c net.Conn) (int, error) {
	raw, err := rawSocketOf(c)
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := raw.Control(func(s uintptr) { fd = int(s) }); err != nil {
		return -1, err
	}
	return fd, nil
}
