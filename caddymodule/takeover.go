package caddymodule

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"

	"go.uber.org/zap"
)

// SSE connection takeover (sse_takeover, on by default).
//
// A live SSE response costs a goroutine, its stack, net/http's buffers and
// request state for as long as the connection stays open, and a trip
// through net/http for every event. Over plain HTTP/1.1 the handler instead
// writes the status line, headers and first piece through the
// ResponseWriter as usual (so every middleware sees them: header rules,
// access log, metrics), then hijacks the connection, hands a duplicate of
// its socket to the engine (native.Engine.Adopt) and returns. The engine's
// fan-out thread writes every later event to it, chunk-framed, and ends the
// response as this package would have (native/sse_fanout.h).
//
// The price: bytes after the first piece bypass response-writer middleware.
// The engine marks SSE `Cache-Control: no-transform`, which Caddy's encode
// honours; a response that some middleware encoded anyway (Content-Encoding
// set) is not taken over. Access logs record the first piece only and the
// time until the takeover.

// takeoverEnabled says whether sse_takeover is on (the default).
// It is never on where the engine cannot take a socket (takeoverSupported:
// Linux only, takeover_linux.go).
func (h *Handler) takeoverEnabled() bool {
	return takeoverSupported && (h.SSETakeover == nil || *h.SSETakeover)
}

// mayTakeOver says, before anything is written, whether an SSE response
// could move to the engine after its first piece: HTTP/1.1 (chunked
// encoding; HTTP/2 and 3 multiplex one connection), no TLS (the engine
// writes plain bytes to the socket), and more to come after the first piece.
//
// With max_live_sessions_per_client, never: a session must be counted
// until it ends, and the handler would not see that.
func (h *Handler) mayTakeOver(r *http.Request, resp response) bool {
	return h.takeoverEnabled() && (h.limits == nil || h.limits.live == nil) && r.ProtoMajor == 1 && r.ProtoMinor >= 1 && r.TLS == nil && !resp.Done()
}

// takeOver moves a streaming response whose headers and first piece (resp)
// went out through w to the engine. It returns false, having changed
// nothing, when the response cannot move: net/http did not use chunked
// encoding, a middleware encodes the body, or the connection cannot be
// hijacked; the caller then streams on through w. Once it returns true, resp
// is taken care of.
func (h *Handler) takeOver(w http.ResponseWriter, resp response, wake <-chan struct{}) bool {
	hdr := w.Header()
	if len(hdr["Content-Encoding"]) > 0 || len(hdr["Transfer-Encoding"]) > 0 || len(hdr["Content-Length"]) > 0 {
		return false
	}
	// Beneath every wrapper: they have seen the header and the flushed first
	// piece; a wrapper's own Hijack (Caddy's access-log recorder) would hand
	// back a wrapped connection that hides its socket.
	hj, ok := innermostWriter(w).(http.Hijacker)
	if !ok {
		return false
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return false
	}
	fd, err := socketOf(conn)
	if err != nil {
		// A listener wrapper we do not know may rewrite what is written:
		// keep streaming here, through it.
		h.logger.Debug("SSE takeover: connection has no socket to hand over; streaming in Go",
			zap.String("conn", fmt.Sprintf("%T", conn)), zap.Error(err))
		h.streamHijacked(conn, brw, resp, wake)
		return true
	}
	session := resp.Session()
	resp.Release()
	_ = conn.Close() // the duplicate keeps the socket open
	noteTakeover()
	if err := h.engine.Adopt(session, fd, h.owner); err != nil {
		// The engine closed the socket: the client reconnects from its last
		// control event.
		h.logger.Warn("SSE takeover failed", zap.Uint64("session", session), zap.Error(err))
	}
	return true
}

// innermostWriter unwraps middleware's ResponseWriters down to net/http's.
func innermostWriter(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}

// streamHijacked streams the rest of a response over a hijacked connection
// the engine cannot take: the loop of the ResponseWriter path, with the
// chunk framing net/http would have added, and the terminating chunk.
func (h *Handler) streamHijacked(conn net.Conn, brw *bufio.ReadWriter, resp response, wake <-chan struct{}) {
	defer conn.Close()
	// After a hijack nothing tells the request's context that the client
	// left; reading does (and discards anything it sends).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, brw.Reader)
		cancel()
	}()
	var chunk []byte
	send := func(p []byte) error {
		if len(p) == 0 {
			return nil
		}
		chunk = strconv.AppendInt(chunk[:0], int64(len(p)), 16)
		chunk = append(chunk, "\r\n"...)
		chunk = append(chunk, p...)
		chunk = append(chunk, "\r\n"...)
		_, err := conn.Write(chunk)
		return err
	}
	if h.follow(ctx, resp, wake, send, inline) {
		_, _ = io.WriteString(conn, "0\r\n\r\n")
	}
}
