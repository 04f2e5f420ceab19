package caddymodule

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Large catch-up reads written on the connection directly
// (docs/large-reads-and-durable-appends.md, third round).
//
// Through net/http a large body goes out 64 KiB at a time: Caddy's
// IdleTimeoutWriter cuts it into chunks, each a trip through net/http's
// writer and Go's poller (a write or sendfile, a deadline update, a wait in
// the netpoller when the socket is full), and each 64 KiB write on a
// TCP_NODELAY socket ends in a tail segment of its own. For a body of at
// least directBodyMin bytes on plain HTTP/1.1 with only pass-through
// wrappers around the ResponseWriter (the long-poll takeover's conditions),
// the handler instead hijacks the connection, writes the head net/http
// would have written, sends the body in as few system calls as the socket
// takes (one writev of all the memory blocks, one sendfile per file range),
// and gives the connection back to the http.Server for the client's next
// request (takeover_keepalive.go's return listener).
//
// The price is the takeovers' one: the access log and Caddy's metrics see
// the request with status 0 and no bytes.

// directBodyMin is the smallest body sent directly: below it the per-request
// hijack and return cost more than the chunking saves.
const directBodyMin = 1 << 20

// directWriteIdle bounds how long a direct body may make no progress
// without an IdleTimeoutWriter to say (Caddy's default write idle timeout).
const directWriteIdle = time.Minute

// mayWriteDirect says whether a response with this body length may be
// written on the connection directly.
func (h *Handler) mayWriteDirect(w http.ResponseWriter, r *http.Request, contentLength int) bool {
	if contentLength < directBodyMin || !h.directReadsEnabled() || r.Close || r.ContentLength != 0 ||
		len(w.Header()["Connection"]) > 0 {
		return false
	}
	return onPlainConnection(w, r)
}

// directReadsEnabled says whether direct_reads is on (the default).
func (h *Handler) directReadsEnabled() bool {
	return takeoverSupported && (h.DirectReads == nil || *h.DirectReads)
}

// writeDirect writes a complete response (status, headers set so far on w,
// resp's headers, body) on r's connection, then hands the connection back to
// the http.Server. It returns false, having written nothing, when the
// connection cannot be taken; the caller then writes through w.
func writeDirect(w http.ResponseWriter, r *http.Request, resp response, status, contentLength int) bool {
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	if srv == nil {
		return false
	}
	home := returnListenerFor(srv)
	if home == nil {
		return false
	}
	hj, ok := innermostWriter(w).(http.Hijacker)
	if !ok {
		return false
	}
	idle := directWriteIdle
	var hard time.Time
	if itw, ok := w.(*caddyhttp.IdleTimeoutWriter); ok {
		if itw.Deadline.Timeout > 0 {
			idle = itw.Deadline.Timeout
		}
		hard = itw.Deadline.HardDeadline
	}
	hdr := w.Header().Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	writeHeader(headerOnly(hdr), resp, contentLength)
	markPrivate(headerOnly(hdr), r)
	head := renderHead(hdr, status, time.Now())

	conn, brw, err := hj.Hijack()
	if err != nil {
		return false
	}
	// The client may already have sent its next request (pipelining): the
	// bytes net/http read ahead go back with the connection.
	var next net.Conn = conn
	if n := brw.Reader.Buffered(); n > 0 {
		ahead, _ := brw.Reader.Peek(n)
		next = &readAheadConn{Conn: conn, ahead: bytes.Clone(ahead)}
	}
	directReads.Inc()
	d := directDeadline{conn: conn, idle: idle, hard: hard}
	limitSendBuffer(conn)
	ok = sendDirect(conn, d, head, resp) == nil
	if ok {
		ok = conn.SetDeadline(time.Time{}) == nil
	}
	if ok {
		ok = home.push(next)
	}
	if !ok {
		_ = conn.Close()
	}
	return true
}

// directDeadline moves the connection's write deadline as a body makes
// progress: idle from now, capped by a hard deadline if one is set.
type directDeadline struct {
	conn net.Conn
	idle time.Duration
	hard time.Time
}

func (d directDeadline) extend() error {
	t := time.Now().Add(d.idle)
	if !d.hard.IsZero() && d.hard.Before(t) {
		t = d.hard
	}
	return d.conn.SetWriteDeadline(t)
}

// renderHead is the status line and header block net/http writes for a
// response with the header map hdr (Content-Length set) on HTTP/1.1.
func renderHead(hdr http.Header, status int, now time.Time) []byte {
	var b bytes.Buffer
	b.Grow(1024)
	b.WriteString("HTTP/1.1 ")
	if text := http.StatusText(status); text != "" {
		b.WriteString(strconv.Itoa(status) + " " + text)
	} else {
		b.WriteString(strconv.Itoa(status) + " status code " + strconv.Itoa(status))
	}
	b.WriteString("\r\n")
	_ = hdr.Write(&b)
	if _, ok := hdr["Date"]; !ok {
		b.WriteString("Date: " + now.UTC().Format(http.TimeFormat) + "\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// readAheadConn is a connection whose first reads return bytes read from it
// earlier.
type readAheadConn struct {
	net.Conn
	ahead []byte
}

func (c *readAheadConn) Read(p []byte) (int, error) {
	if len(c.ahead) > 0 {
		n := copy(p, c.ahead)
		c.ahead = c.ahead[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// sendDirect writes head, then resp's body, parts and files, on conn.
func sendDirect(conn net.Conn, d directDeadline, head []byte, resp response) error {
	bufs := make(net.Buffers, 0, 2+len(resp.Parts()))
	bufs = append(bufs, head)
	if b := resp.Body(); len(b) > 0 {
		bufs = append(bufs, b)
	}
	bufs = append(bufs, resp.Parts()...)
	files := resp.TakeFiles()
	defer func() {
		for _, f := range files {
			_ = f.File.Close()
		}
	}()
	if err := d.extend(); err != nil {
		return err
	}
	if err := writeBuffers(conn, d, bufs); err != nil {
		return err
	}
	for _, f := range files {
		if err := sendFileRange(conn, d, f.File, f.Offset, f.Length); err != nil {
			return err
		}
	}
	return nil
}

// directStep is how many bytes one call may send before the write deadline
// moves on: enough that the deadline update is rare, few enough that a slow
// client still counts as progressing.
const directStep = 4 << 20

// writeBuffers writes bufs with writev, directStep bytes at a time.
func writeBuffers(conn net.Conn, d directDeadline, bufs net.Buffers) error {
	for len(bufs) > 0 {
		var step net.Buffers
		n := 0
		for len(bufs) > 0 && n < directStep {
			b := bufs[0]
			if n+len(b) > directStep && n > 0 {
				break
			}
			step = append(step, b)
			n += len(b)
			bufs = bufs[1:]
		}
		if _, err := step.WriteTo(conn); err != nil {
			return err
		}
		if len(bufs) > 0 {
			if err := d.extend(); err != nil {
				return err
			}
		}
	}
	return nil
}

// sendFileRange sends length bytes of f from offset on conn: net's
// sendfile path (TCPConn.ReadFrom of an io.LimitedReader around an
// *os.File), directStep bytes per deadline.
func sendFileRange(conn net.Conn, d directDeadline, f interface {
	io.Reader
	io.Seeker
}, offset, length int64) error {
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return err
	}
	rf, ok := conn.(io.ReaderFrom)
	if !ok {
		_, err := io.CopyN(conn, f, length)
		return err
	}
	for length > 0 {
		step := min(length, directStep)
		n, err := rf.ReadFrom(&io.LimitedReader{R: f, N: step})
		if err == nil && n != step {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
		length -= n
		if length > 0 {
			if err := d.extend(); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeReadDirect writes a complete (not live) response on the connection
// directly when it may (mayWriteDirect) and says whether it did.
func (h *Handler) writeReadDirect(w http.ResponseWriter, r *http.Request, resp response) (int, bool) {
	status := resp.Status()
	if !bodyAllowed(status) || r.Method != http.MethodGet {
		return 0, false
	}
	contentLength := len(resp.Body()) + int(resp.FilesLen())
	for _, p := range resp.Parts() {
		contentLength += len(p)
	}
	if !h.mayWriteDirect(w, r, contentLength) || !writeDirect(w, r, resp, status, contentLength) {
		return 0, false
	}
	return status, true
}
