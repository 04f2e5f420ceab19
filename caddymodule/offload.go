package caddymodule

import "time"

// A live response served by its goroutine (SSE or a long-poll over TLS,
// HTTP/2 or HTTP/3, where no takeover applies) parks that goroutine for as
// long as the client listens, at the bottom of Caddy's handler chain: about
// 5.4 KiB of frames from the HTTP/2 server's runHandler to our ServeHTTP. A
// goroutine starts with an 8 KiB stack (the runtime's average), of which
// about 7.2 KiB can hold frames before it must grow, and the deep calls of a
// live response (an engine call, copying the engine's headers, a write and
// flush through Caddy's idle-timeout writer into HTTP/2's, ctx.Done() over
// Caddy's chain of context values, a select that adds a time.Timer to the
// runtime's heap) reach past that: the stack is copied into one of 16 KiB,
// and it keeps that size while parked, since a stack is halved only when
// under a quarter of it is in use. (Found with a perf probe on
// runtime.morestack.)
//
// offload runs those deep calls on a short-lived goroutine of their own and
// waits for it, so the parked goroutine never grows; the helper's stack goes
// back to the runtime as soon as it returns. It costs a goroutine start and
// a channel handoff per call, which is small beside what one piece costs to
// send over HTTP/2.

// offload runs f on a new goroutine and returns once f has. A panic in f is
// raised again on the caller's goroutine (net/http and Caddy recover panics
// there, http.ErrAbortHandler included).
func offload(f func()) {
	done := make(chan any, 1)
	go func() {
		finished := false
		defer func() {
			if finished {
				done <- nil
				return
			}
			p := recover()
			if p == nil { // runtime.Goexit: nothing to re-raise
				p = errOffloadExit
			}
			done <- p
		}()
		f()
		finished = true
	}()
	if p := <-done; p != nil {
		panic(p)
	}
}

// errOffloadExit is raised when an offloaded function called
// runtime.Goexit, which only tests do.
var errOffloadExit = offloadExit{}

type offloadExit struct{}

func (offloadExit) Error() string { return "offloaded call exited its goroutine" }

// inline runs f on the calling goroutine: the offload of paths whose
// goroutine does not park (takeover's own loops).
func inline(f func()) { f() }

// liveTimer is the wait_ms timer of a parked live response. A select on a
// time.Timer's channel adds the timer to the runtime's heap from inside the
// select, a call chain deep enough to grow a parked stack; this one is armed
// and stopped on the short-lived goroutines and closes a plain channel when
// it fires. A timer stopped before it fired is re-armed as it is (its
// channel is still open); once it has fired, or may be firing, the next
// arming gets a new timer and channel, so no wait sees an earlier fire.
type liveTimer struct {
	t    *time.Timer
	fire chan struct{}
}

// arm (re)starts the timer: fire closes after d.
func (lt *liveTimer) arm(d time.Duration) {
	if lt.t != nil && lt.t.Stop() {
		lt.t.Reset(d)
		return
	}
	fire := make(chan struct{})
	lt.fire = fire
	lt.t = time.AfterFunc(d, func() { close(fire) })
}

func (lt *liveTimer) stop() {
	if lt.t != nil {
		lt.t.Stop()
	}
}
