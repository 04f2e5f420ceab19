package caddymodule

import (
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/durable-streams-server/durable-streams-server/native"
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
// (debug.FreeOSMemory, and the engine's freed C++ heap with
// native.TrimMalloc). Under a steady stream of takeovers (long-polls
// answered and re-polled) it does not: the garbage of one poll is the
// memory the next one reuses, and returning it would only cost page
// faults. A pause between takeovers is not enough to tell: a long-poll
// fan-out's bursts (one per append) are often more than freeSettle apart,
// and a forced collection plus returning and faulting back ~100 MB between
// two bursts delayed the next append by up to 200 ms. So once long-polls
// have been answered by the engine (their connections come back for the
// next poll), the process waits for freeAfterAnswers without answers too.
const (
	freeSettle       = 300 * time.Millisecond
	freeAfterAnswers = 2 * time.Second
	freeMinTakeovers = 256
)

var takeoverMemory struct {
	count      atomic.Uint64 // takeovers so far
	pending    atomic.Bool   // a check is scheduled
	answeredAt atomic.Int64  // sinceStart() of the last answered long-poll; 0: none

	mu      sync.Mutex
	freedAt uint64 // count at the last FreeOSMemory
}

// Seams for tests: the clock (ns since process start), the free and the
// timer that schedules the next check.
var (
	sinceStart   = monotonic // bucket.go
	freeOSMemory = freeBothHeaps
	afterSettle  = func(f func()) { time.AfterFunc(freeSettle, f) }
)

// freeBothHeaps returns Go's free memory and the engine's: glibc keeps
// the burst's freed engine sessions resident in the arenas of the threads
// that made the engine calls (native.TrimMalloc).
func freeBothHeaps() {
	debug.FreeOSMemory()
	native.TrimMalloc()
}

// noteAnswered records that the engine answered a taken-over long-poll
// whose connection comes back for the client's next poll.
func noteAnswered() {
	takeoverMemory.answeredAt.Store(max(sinceStart(), 1))
}

// noteTakeover counts a connection handed to the engine and schedules a
// check, unless one is pending.
func noteTakeover() {
	takeoverMemory.count.Add(1)
	if takeoverMemory.pending.CompareAndSwap(false, true) {
		seen := takeoverMemory.count.Load()
		afterSettle(func() { checkTakeoverGarbage(seen) })
	}
}

// checkTakeoverGarbage frees memory once takeovers have paused (none since
// `seen`); otherwise it looks again later.
func checkTakeoverGarbage(seen uint64) {
	m := &takeoverMemory
	now := m.count.Load()
	m.mu.Lock()
	settled := now == seen
	if at := m.answeredAt.Load(); at != 0 && sinceStart()-at < int64(freeAfterAnswers) {
		settled = false // long-polls still churning: their garbage is reused
	}
	free := settled && now-m.freedAt >= freeMinTakeovers
	if free {
		m.freedAt = now
	}
	m.mu.Unlock()
	if !settled {
		afterSettle(func() { checkTakeoverGarbage(now) })
		return
	}
	if free {
		freeOSMemory()
	}
	m.pending.Store(false)
	// A takeover between the check and clearing pending scheduled nothing.
	if m.count.Load() != now && m.pending.CompareAndSwap(false, true) {
		afterSettle(func() { checkTakeoverGarbage(m.count.Load()) })
	}
}
