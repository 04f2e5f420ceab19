package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"

	"github.com/durable-streams-server/durable-streams-server/native"
)

// Long-poll connection takeover (long_poll_takeover, on by default).
//
// A parked long-poll costs a goroutine whose stack is full of Caddy's
// handler chain (16 KiB), net/http's buffers and request state, for as long
// as it waits. Over plain HTTP/1.1, when the engine says a GET must wait,
// nothing of the response has been written yet and the headers earlier
// middleware set are in the header map: the handler hijacks the
// connection, hands a duplicate of its socket, the parked session and those
// headers to the engine (native.Engine.AdoptLongPoll) and returns. The
// engine's fan-out threads wait for the stream with every other adopted
// connection and write the whole answer (200 with the bytes, 204 at the
// timeout, 404/410 after a deletion), rendered as net/http renders what
// writeResponse sets (native/http1_answer.h); then they give the connection
// back for the client's next request (takeover_keepalive.go), or, where it
// cannot go back, answer with Connection: close and close it.
//
// The price: the answer bypasses response-writer middleware, so takeover
// happens only when every wrapper around the ResponseWriter is one known to
// pass the response through unchanged (Caddy's access-log and metrics
// recorders without a buffer, its idle-timeout wrappers); access logs and
// Caddy's metrics record the request with status 0, no bytes and the time
// up to the park; this package counts it with status 0 too.

// longPollOwner marks the owner tag of taken-over long-polls, so that a
// stopping config can end them (EndAdopted) and not its SSE responses.
const longPollOwner = uint64(1) << 63

// longPollTakeoverEnabled says whether long_poll_takeover is on (the
// default) where the engine can take a socket.
func (h *Handler) longPollTakeoverEnabled() bool {
	return takeoverSupported && (h.LongPollTakeover == nil || *h.LongPollTakeover)
}

// mayTakeOverLongPoll says whether a parked long-poll can move to the
// engine: no max_live_sessions_per_client (a session must be counted until
// it ends), no private (token-scoped) caching rewrite, and a plain
// connection (onPlainConnection).
func (h *Handler) mayTakeOverLongPoll(w http.ResponseWriter, r *http.Request) bool {
	if !h.longPollTakeoverEnabled() || (h.limits != nil && h.limits.live != nil) {
		return false
	}
	if tokensInUse.Load() {
		if private, _ := r.Context().Value(privateResponse{}).(bool); private {
			return false
		}
	}
	return onPlainConnection(w, r)
}

// onPlainConnection says whether r's response may be written on its
// connection outside net/http's writer (long-poll takeover, direct reads):
// a GET over plain HTTP/1.1 on a TCP or Unix connection, no framing header
// set by middleware, and only pass-through wrappers around the
// ResponseWriter.
func onPlainConnection(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet || r.ProtoMajor != 1 || r.ProtoMinor < 1 || r.TLS != nil {
		return false
	}
	switch r.Context().Value(http.LocalAddrContextKey).(type) {
	case *net.TCPAddr, *net.UnixAddr:
	default:
		return false
	}
	hdr := w.Header()
	if len(hdr["Content-Encoding"]) > 0 || len(hdr["Transfer-Encoding"]) > 0 || len(hdr["Content-Length"]) > 0 {
		return false
	}
	return passThroughWriters(w)
}

// passThroughWriters says whether every ResponseWriter wrapper down to
// net/http's is one that neither buffers nor rewrites the response.
func passThroughWriters(w http.ResponseWriter) bool {
	for {
		if reflect.TypeOf(w).String() == "*http.response" {
			return true
		}
		if !passThroughWriter(w) {
			return false
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return false
		}
		w = u.Unwrap()
	}
}

// passThroughWriter says whether the wrapper w (not net/http's own writer)
// neither buffers nor rewrites the response it passes on.
func passThroughWriter(w http.ResponseWriter) bool {
	switch reflect.TypeOf(w).String() {
	case "*caddyhttp.responseRecorder":
		// The access log's and metrics' recorders have no buffer; one
		// with a buffer (intercept, templates, handle_response) may
		// rewrite the body.
		v := reflect.ValueOf(w).Elem()
		buf := v.FieldByName("buf")
		return buf.IsValid() && buf.IsNil() && v.FieldByName("shouldBuffer").IsValid()
	case "*caddyhttp.readDeadlineWriter", "*caddyhttp.IdleTimeoutWriter",
		"*caddyhttp.ResponseWriterWrapper":
		return true
	}
	return false
}

// takeOverLongPoll moves the parked long-poll resp, on whose connection
// nothing has been written, to the engine. It returns false, having changed
// nothing, when the connection cannot be hijacked; the caller then waits as
// usual. Once it returns true, resp is taken care of.
func (h *Handler) takeOverLongPoll(w http.ResponseWriter, r *http.Request, resp response, wake <-chan struct{}) bool {
	headers := encodeHeaderBlock(w.Header())
	hj, ok := innermostWriter(w).(http.Hijacker)
	if !ok {
		return false
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return false
	}
	// Keep-alive (takeover_keepalive.go) unless the client asked for close,
	// sent a body or more bytes already, or middleware set Connection. A
	// kept connection's own socket is lent to the engine (no dup, no close
	// per poll) where the engine can borrow one; otherwise it gets a
	// duplicate, and a connection it closes is closed here at once.
	keepAlive := !r.Close && r.ContentLength == 0 && brw.Reader.Buffered() == 0 && len(w.Header()["Connection"]) == 0
	borrower, canBorrow := h.engine.(borrowingEngine)
	borrow := keepAlive && canBorrow
	var fd int
	if borrow {
		fd, err = borrowedSocketOf(conn)
	} else {
		fd, err = socketOf(conn)
	}
	if err != nil {
		h.logger.Debug("long-poll takeover: connection has no socket to hand over; waiting in Go",
			zap.String("conn", fmt.Sprintf("%T", conn)), zap.Error(err))
		h.longPollHijacked(conn, brw, w.Header().Clone(), resp, wake)
		return true
	}
	session := resp.Session()
	resp.Release()
	var tag uint64
	if keepAlive {
		srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
		tag = keepForReturn(srv, conn, h.lease)
	}
	if tag == 0 && borrow {
		// No server to give it back to: the engine gets a duplicate and
		// answers with Connection: close after all.
		borrow = false
		if fd, err = socketOf(conn); err != nil {
			_ = conn.Close()
			h.engine.Cancel(session)
			return true
		}
	}
	if tag == 0 {
		_ = conn.Close() // the duplicate keeps the socket open
	}
	noteTakeover()
	// When this config stops, its long-polls end at once with the timeout
	// answer, as the goroutine path's do, so clients poll the next config;
	// taken-over SSE responses instead keep streaming (module.go, stop).
	h.stopping.endLongPollsOnStop(func() { h.engine.EndAdopted(h.owner | longPollOwner) })
	if borrow {
		err = borrower.AdoptLongPollBorrowed(session, fd, h.owner|longPollOwner, headers, tag)
	} else {
		err = h.engine.AdoptLongPoll(session, fd, h.owner|longPollOwner, headers, tag)
	}
	if err != nil {
		// The engine closed its duplicate, or never took the borrowed
		// socket: the client polls again.
		if tag != 0 {
			forget(tag)
			_ = conn.Close()
		}
		h.logger.Warn("long-poll takeover failed", zap.Uint64("session", session), zap.Error(err))
	}
	return true
}

// borrowingEngine is an engine that can borrow a kept-alive connection's
// own socket (native.Engine.AdoptLongPollBorrowed); the tests' fake cannot.
type borrowingEngine interface {
	AdoptLongPollBorrowed(session uint64, fd int, owner uint64, headers []byte, returnTag uint64) error
}

// encodeHeaderBlock encodes a header map as "Name\0value\0..." (one pair
// per value) for the engine, leaving out what net/http would not write.
func encodeHeaderBlock(hdr http.Header) []byte {
	n := 0
	for k, vs := range hdr {
		for _, v := range vs {
			n += len(k) + len(v) + 2
		}
	}
	out := make([]byte, 0, n)
	for k, vs := range hdr {
		if !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vs {
			out = append(out, k...)
			out = append(out, 0)
			out = append(out, v...)
			out = append(out, 0)
		}
	}
	return out
}

// longPollHijacked serves a long-poll over a hijacked connection the engine
// cannot take (an unknown listener wrapper): the wait of the ResponseWriter
// path, then the answer as the engine would render it.
func (h *Handler) longPollHijacked(conn net.Conn, brw *bufio.ReadWriter, hdr http.Header, resp response, wake <-chan struct{}) {
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, brw.Reader)
		cancel()
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		session, wait := resp.Session(), resp.Wait()
		resp.Release()
		reason := native.ResumeTimeout
		switch h.await(ctx, wake, timer, wait) {
		case woken:
			reason = native.ResumeWake
		case clientGone:
			h.engine.Cancel(session)
			return
		case shuttingDown:
			reason = native.ResumeEnd
		}
		var err error
		resp, err = h.engine.Resume(session, reason)
		if err != nil {
			h.engine.Cancel(session)
			return
		}
		if resp.Live() == native.LiveNone {
			_, _ = conn.Write(renderAnswer(hdr, resp, time.Now()))
			resp.Release()
			return
		}
		if reason == native.ResumeEnd {
			resp.Release()
			h.engine.Cancel(session)
			return
		}
	}
}

// renderAnswer is what net/http writes for writeResponse(resp) on a GET with
// hdr as the header map so far, plus Connection: close: the Go twin of
// native/http1_answer.cc, and what tests compare the engine's bytes with.
func renderAnswer(hdr http.Header, resp response, now time.Time) []byte {
	hdr = hdr.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	status := resp.Status()
	body := resp.Body()
	contentLength := -1
	if bodyAllowed(status) {
		contentLength = len(body)
	}
	writeHeader(headerOnly(hdr), resp, contentLength)
	addClose := !strings.Contains(strings.ToLower(hdr.Get("Connection")), "close")
	if addClose {
		delete(hdr, "Connection")
	}
	if !bodyAllowed(status) {
		delete(hdr, "Content-Length")
		delete(hdr, "Transfer-Encoding")
		if status == http.StatusNotModified {
			delete(hdr, "Content-Type")
		}
	}
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 ")
	if text := http.StatusText(status); text != "" {
		b.WriteString(strconv.Itoa(status) + " " + text)
	} else {
		fmt.Fprintf(&b, "%03d status code %d", status, status)
	}
	b.WriteString("\r\n")
	_ = hdr.Write(&b)
	if _, ok := hdr["Date"]; !ok {
		b.WriteString("Date: " + now.UTC().Format(http.TimeFormat) + "\r\n")
	}
	if addClose {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	if bodyAllowed(status) {
		b.Write(body)
	}
	return b.Bytes()
}

// headerOnly is a ResponseWriter that is only a header map, for writeHeader.
type headerOnly http.Header

func (h headerOnly) Header() http.Header       { return http.Header(h) }
func (headerOnly) Write(p []byte) (int, error) { return len(p), nil }
func (headerOnly) WriteHeader(int)             {}
