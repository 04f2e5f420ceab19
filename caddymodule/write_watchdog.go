package caddymodule

import (
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Over HTTP/2 every write deadline is a message to the connection's serve
// goroutine (which also writes every stream's frames) and a timer it
// creates or swaps there; the one idle-deadline window of a piece
// (idle_piece.go) still costs two of them, arm and clear, for a deadline
// that on a healthy stream never fires.
//
// writeWatchdog keeps that window on the handler's side instead. While a
// piece is written, the idle writer's response controller is pointed at the
// watchdog: Caddy's IdleTimeoutWriter computes and sets every deadline as
// it always does (its timeout per MaxChunk, capped by write_timeout and a
// deadline a handler set), and the watchdog arms one timer of its own at
// that deadline (no message) and disarms it when the idle writer clears
// it. Only if the timer fires, that is when the write or flush of
// the piece has not returned by the idle writer's deadline, does it set the
// stream's write deadline in the past: HTTP/2 then resets the stream at
// once (the very call its own deadline timer makes when it fires), which
// fails the Write or Flush that blocks on the stalled client. A healthy
// piece sends no deadline message at all.
//
// It stands in only where the idle writer's clear puts back "no deadline"
// (no write_timeout and no deadline set by a handler): then the stream has
// no deadline between pieces, and the watchdog stopped is exactly the
// deadline cleared. With a ceiling the stream's own deadline is used.
type writeWatchdog struct {
	http.ResponseWriter // what the idle writer's controller wraps while a piece is written

	idle   *caddyhttp.IdleTimeoutWriter
	stream *http.ResponseController // Caddy's controller of the stream (idle.Ctrl)
	ctrl   *http.ResponseController // the idle writer's controller while a piece is written

	mu    sync.Mutex
	timer *time.Timer
	fires time.Time // when the pending timer fires; zero when none is
	due   time.Time // the deadline armed; zero when disarmed
}

// newWriteWatchdog returns the watchdog for idle's stream, or nil where the
// stream's deadline between writes is not "none".
func newWriteWatchdog(w http.ResponseWriter, idle *caddyhttp.IdleTimeoutWriter) *writeWatchdog {
	if idle.Ctrl == nil || !idle.Deadline.HardDeadline.IsZero() || !noHandlerDeadline(idle) {
		return nil
	}
	d := &writeWatchdog{ResponseWriter: w, idle: idle, stream: idle.Ctrl}
	d.ctrl = http.NewResponseController(d)
	return d
}

// noHandlerDeadline reports whether no handler has set a write deadline
// through idle (its ceiling besides write_timeout); false if that cannot be
// told.
func noHandlerDeadline(idle *caddyhttp.IdleTimeoutWriter) bool {
	f := reflect.ValueOf(idle).Elem().FieldByName("handlerDeadline")
	return f.IsValid() && f.Type() == reflect.TypeOf(time.Time{}) && f.IsZero()
}

// watch points the idle writer's deadlines at the watchdog for one piece.
func (d *writeWatchdog) watch() {
	d.idle.Ctrl = d.ctrl
}

// unwatch ends a piece: the idle writer sets the stream's deadlines again,
// and a deadline left armed (a failed write leaves it) is dropped, so no
// timer can touch the stream once the piece's call has returned.
func (d *writeWatchdog) unwatch() {
	d.idle.Ctrl = d.stream
	d.set(time.Time{})
}

// set arms the watchdog at deadline, or disarms it when deadline is zero.
// The timer is lazy, the way the runtime's network deadlines are: a timer
// still pending at or before the new deadline is left as it is (it checks
// the deadline again when it fires), and disarming leaves it pending (it
// finds nothing armed and stops). A piece costs a few stores under mu; the
// timer is touched about once per idle timeout while pieces flow.
func (d *writeWatchdog) set(deadline time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.due = deadline
	if deadline.IsZero() || (!d.fires.IsZero() && !d.fires.After(deadline)) {
		return
	}
	d.schedule(deadline)
}

// schedule makes the timer fire at t. Called with mu held.
func (d *writeWatchdog) schedule(t time.Time) {
	d.fires = t
	if d.timer == nil {
		d.timer = time.AfterFunc(time.Until(t), d.expire)
	} else {
		d.timer.Reset(time.Until(t))
	}
}

// expire runs when the timer fires. A fire scheduled before a Reset that
// moved the timer earlier finds it not yet due and does nothing. If the
// deadline armed now lies ahead, the timer is rescheduled for it; if it
// has passed, the piece's write or flush has not returned in time: the
// stream is reset. It holds mu while it resets the stream, so once set or
// unwatch has returned no reset of that arming can still be under way (the
// handler may return, and HTTP/2's writer must not be used after that).
func (d *writeWatchdog) expire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	if d.fires.IsZero() || now.Before(d.fires) {
		return // an earlier schedule's fire, or stopped by close
	}
	d.fires = time.Time{}
	switch {
	case d.due.IsZero():
	case now.Before(d.due):
		d.schedule(d.due)
	default:
		d.due = time.Time{}
		// A deadline in the past: HTTP/2 resets the stream now.
		_ = d.stream.SetWriteDeadline(time.Unix(1, 0))
	}
}

// close stops a pending timer when the response ends, so it does not keep
// the response's writers reachable until it would have fired.
func (d *writeWatchdog) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.due, d.fires = time.Time{}, time.Time{}
	if d.timer != nil {
		d.timer.Stop()
	}
}

// SetWriteDeadline is what the idle writer's controller reaches while a
// piece is written: it arms the watchdog instead of the stream.
func (d *writeWatchdog) SetWriteDeadline(deadline time.Time) error {
	d.set(deadline)
	return nil
}
