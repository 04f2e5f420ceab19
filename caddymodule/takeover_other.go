//go:build !linux

package caddymodule

import (
	"errors"
	"net"
)

// takeoverSupported: the engine's SSE fan-out needs epoll, so elsewhere
// (macOS, Windows) sse_takeover is accepted but every SSE response stays
// with net/http.
const takeoverSupported = false

var errNoSocket = errors.New("SSE connection takeover is Linux only")

// socketOf is never called where takeoverSupported is false.
func socketOf(c net.Conn) (int, error) { return -1, errNoSocket }

// borrowedSocketOf is never called where takeoverSupported is false.
func borrowedSocketOf(c net.Conn) (int, error) { return -1, errNoSocket }
