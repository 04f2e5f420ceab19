package caddymodule

import (
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Returning a takeover burst's garbage to the OS.
//
// A connection handed to the engine (SSE or long-poll takeover) leaves its
// net/http state behind as garbage: the connection's 4 KiB read and write
// buffers (a hijacked connection's are not pooled again), the response's
// 2 KiB buffer, the request, and its goroutine's stack, 8–16 KiB with
// Caddy's handler chain. Go's collector frees that, but the pages stay
// resident until its background scavenger gets to them, slowly: 5,000 SSE
// subscribers arriving within a second used to leave about 10 KiB of RSS
// each, ten times what the engine keeps per subscriber. So once takeovers
// pause (none for freeSettle), and at least freeMinTakeovers happened since
// the last time, the process collects and returns free memory at once
// (debug.FreeOSMemory). Under a steady stream of takeovers (long-polls
// answered and re-polled) it does not: the garbage of one poll is the
// memory the next one reuses, and returning it would only cost page
// faults.
const (
	freeSettle       = 300 * time.Millisecond
	freeMinTakeovers = 256
)

var takeoverMemory struct {
	count   atomic.Uint64 // takeovers so far
	pending atomic.Bool   // a check is scheduled

	mu      sync.Mutex
	freedAt uint64 // count at the last FreeOSMemory
}

// noteTakeover counts a connection handed to the engine and schedules a
// check, unless one is pending.
func noteTakeover() {
	takeoverMemory.count.Add(1)
	if takeoverMemory.pending.CompareAndSwap(false, true) {
		seen := takeoverMemory.count.Load()
		time.AfterFunc(freeSettle, func() { checkTakeoverGarbage(seen) })
	}
}

// checkTakeoverGarbage frees memory once takeovers have paused (none since
// `seen`); otherwise it looks again later.
func checkTakeoverGarbage(seen uint64) {
	m := &takeoverMemory
	now := m.count.Load()
	m.mu.Lock()
	settled := now == seen
	free := settled && now-m.freedAt >= freeMinTakeovers
	if free {
		m.freedAt = now
	}
	m.mu.Unlock()
	if !settled {
		time.AfterFunc(freeSettle, func() { checkTakeoverGarbage(now) })
		return
	}
	if free {
		debug.FreeOSMemory()
	}
	m.pending.Store(false)
	// A takeover between the check and clearing pending scheduled nothing.
	if m.count.Load() != now && m.pending.CompareAndSwap(false, true) {
		time.AfterFunc(freeSettle, func() { checkTakeoverGarbage(m.count.Load()) })
	}
}
