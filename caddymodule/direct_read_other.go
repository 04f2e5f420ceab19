//go:build !linux

package caddymodule

import "net"

// limitSendBuffer: direct reads happen on Linux only (takeoverSupported).
func limitSendBuffer(net.Conn) {}
