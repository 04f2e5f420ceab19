package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Over HTTP/2 Caddy's write idle timeout (IdleTimeoutWriter with
// ClearBetweenWrites) arms the stream's write deadline before every Write
// and every Flush and clears it after each: on HTTP/2 a deadline left armed
// is a timer that resets the stream when it fires, even between writes, so
// it must not stay armed while an SSE response waits for its next piece
// (caddy #8118). Each of those four calls is a message to, and a wait on,
// the connection's serve goroutine, which also writes every stream's frames:
// four of the five round trips a piece makes to it.
//
// idlePieceWriter writes one piece under ONE idle-deadline window instead:
// the deadline is armed once before the Write, stays armed through the
// Flush, and is put back to its ceiling once after it. The Write and the
// clear still go through Caddy's IdleTimeoutWriter, so its timeout, its
// HardDeadline (write_timeout) and a deadline set by a handler through
// http.ResponseController cap the window exactly as before; a client that
// stops reading is cut after the idle timeout (the Flush blocks under the
// armed deadline); nothing stays armed between pieces.
type idlePieceWriter struct {
	w     http.ResponseWriter          // the handler's writer (whole chain)
	idle  *caddyhttp.IdleTimeoutWriter // Caddy's write idle timeout
	below *http.ResponseController     // the writers under idle
	dog   *writeWatchdog               // nil: the stream's own deadline
	watch bool                         // make dog at the first piece sent
}

// newIdlePieceWriter returns the one-window writer for w, or nil where the
// ordinary Write + Flush must be used: no idle timeout with
// ClearBetweenWrites (only HTTP/2 sets it), a minimum rate (its allowance
// is counted per call), or a wrapper above the idle writer that is not
// pass-through (its Flush could do more than pass the flush on, e.g.
// encode or buffer; the same wrappers the takeover accepts).
func newIdlePieceWriter(w http.ResponseWriter, r *http.Request) *idlePieceWriter {
	idle := clearingIdleWriter(w, r)
	if idle == nil {
		return nil
	}
	return &idlePieceWriter{w: w, idle: idle, below: http.NewResponseController(idle.ResponseWriterWrapper)}
}

// clearingIdleWriter returns Caddy's idle-timeout writer under w when it
// clears its deadline between writes and has no minimum rate, and every
// wrapper above it is pass-through; else nil.
func clearingIdleWriter(w http.ResponseWriter, r *http.Request) *caddyhttp.IdleTimeoutWriter {
	_, idle := caddyhttp.IdleTimeoutsFromContext(r.Context())
	if idle == nil || !idle.ClearBetweenWrites || idle.Deadline.MinRate > 0 {
		return nil
	}
	for cur := w; cur != http.ResponseWriter(idle); {
		if !passThroughWriter(cur) {
			return nil
		}
		u, ok := cur.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil
		}
		cur = u.Unwrap()
	}
	return idle
}

// watched makes pw keep each piece's deadline window on a watchdog timer
// (write_watchdog.go) where it can: no deadline message per healthy piece.
// Without it, or where the stream has a deadline ceiling, the window is the
// stream's own write deadline.
// The watchdog is made at the first piece sent (not for a subscriber that
// never gets one).
func (pw *idlePieceWriter) watched() *idlePieceWriter {
	if pw != nil {
		pw.watch = true
	}
	return pw
}

// close ends pw's use: a watchdog's pending timer is stopped.
func (pw *idlePieceWriter) close() {
	if pw != nil && pw.dog != nil {
		pw.dog.close()
	}
}

// writeLastResponse writes resp as the handler's last act (a long-poll's
// answer) under one idle-deadline window: the idle writer arms the
// deadline for the Write and leaves it armed for the flush net/http does
// once the handler returns, where it would otherwise clear it after the
// Write and arm it again in HandlerDone (three deadline messages, now one).
// The stream ends with the response, which stops the deadline's timer.
func writeLastResponse(w http.ResponseWriter, r *http.Request, resp response) int {
	idle := clearingIdleWriter(w, r)
	if idle == nil {
		return writeResponse(w, r, resp)
	}
	idle.ClearBetweenWrites = false
	defer func() { idle.ClearBetweenWrites = true }()
	return writeResponse(w, r, resp)
}

// send writes and flushes one piece. An empty piece (only a flush) takes
// the ordinary path.
func (pw *idlePieceWriter) send(p []byte) error {
	if len(p) == 0 {
		return http.NewResponseController(pw.w).Flush()
	}
	if pw.watch {
		pw.dog, pw.watch = newWriteWatchdog(pw.w, pw.idle), false
	}
	if pw.dog != nil {
		pw.dog.watch()
		defer pw.dog.unwatch()
	}
	// Arm without clearing: the idle writer arms the deadline before the
	// Write (each MaxChunk) and, with ClearBetweenWrites off, leaves it.
	pw.idle.ClearBetweenWrites = false
	_, err := pw.w.Write(p)
	pw.idle.ClearBetweenWrites = true
	if err != nil {
		return err // left armed, as the idle writer leaves a failed write's
	}
	if err := pw.below.Flush(); err != nil {
		return err
	}
	// An empty Write clears the deadline back to its ceiling (and nothing
	// else): the one clear of the window.
	_, err = pw.idle.Write(nil)
	return err
}
