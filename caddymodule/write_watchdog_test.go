package caddymodule

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// watchedConn is a deadlineConn that also logs whether the watchdog is
// armed when the piece is written and flushed.
type watchedConn struct {
	*deadlineConn
	pw *idlePieceWriter
}

func (c *watchedConn) watched() string {
	if c.pw.dog == nil {
		return "none"
	}
	return armed(c.pw.dog.due)
}

func (c *watchedConn) Write(p []byte) (int, error) {
	c.log = append(c.log, "write watched="+c.watched())
	return c.deadlineConn.Write(p)
}

func (c *watchedConn) FlushError() error {
	c.log = append(c.log, "flush watched="+c.watched())
	return c.deadlineConn.FlushError()
}

// watchedRequest is idleRequest over conn with the idle writer's timeout.
func watchedRequest(conn http.ResponseWriter, timeout time.Duration) (*http.Request, *caddyhttp.IdleTimeoutWriter) {
	r, idle := idleRequest(&deadlineConn{header: http.Header{}}, 0, true)
	idle.ResponseWriterWrapper = &caddyhttp.ResponseWriterWrapper{ResponseWriter: conn}
	idle.Ctrl = http.NewResponseController(conn)
	idle.Deadline.Timeout = timeout
	return r, idle
}

func TestWatchdogHealthyPiecesSetNoDeadline(t *testing.T) {
	conn := &watchedConn{deadlineConn: &deadlineConn{header: http.Header{}}}
	r, idle := watchedRequest(conn, time.Minute)
	stream := idle.Ctrl
	pw := newIdlePieceWriter(&caddyhttp.ResponseWriterWrapper{ResponseWriter: idle}, r).watched()
	if pw == nil {
		t.Fatal("no one-window writer over HTTP/2's idle writer")
	}
	if pw.dog != nil {
		t.Errorf("a watchdog before the first piece; want it made for the first piece sent")
	}
	conn.pw = pw
	piece := strings.Repeat("p", 100)
	for range 3 {
		conn.calls, conn.log = nil, nil
		if err := pw.send([]byte(piece)); err != nil {
			t.Fatal(err)
		}
		if len(conn.calls) != 0 {
			t.Errorf("deadlines set on the stream %v; want none for a healthy piece", conn.calls)
		}
		if got, want := strings.Join(conn.log, ", "), "write watched=yes, write armed=no, flush watched=yes, flush armed=no"; got != want {
			t.Errorf("%s; want %s", got, want)
		}
		if !pw.dog.due.IsZero() {
			t.Errorf("watchdog still armed after the piece")
		}
		if idle.Ctrl != stream {
			t.Errorf("the idle writer's controller was not put back")
		}
	}
	if conn.buf.String() != strings.Repeat(piece, 3) {
		t.Errorf("wrote %q", conn.buf.String())
	}
}

func TestWatchdogOnlyWithoutDeadlineCeiling(t *testing.T) {
	conn := &deadlineConn{header: http.Header{}}
	r, idle := watchedRequest(conn, time.Minute)
	idle.Deadline.HardDeadline = time.Now().Add(time.Hour) // write_timeout
	if pw := newIdlePieceWriter(idle, r).watched(); pw.send([]byte("x")) != nil || pw.dog != nil {
		t.Errorf("watchdog under write_timeout; want the stream's own deadline")
	}

	r, idle = watchedRequest(conn, time.Minute)
	if err := idle.SetWriteDeadline(time.Now().Add(time.Hour)); err != nil { // a handler's
		t.Fatal(err)
	}
	if pw := newIdlePieceWriter(idle, r).watched(); pw.send([]byte("x")) != nil || pw.dog != nil {
		t.Errorf("watchdog under a handler's write deadline; want the stream's own deadline")
	}
	conn.calls = nil
	if err := newIdlePieceWriter(idle, r).watched().send([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if len(conn.calls) != 2 {
		t.Errorf("deadlines set on the stream %v; want the one window's two", conn.calls)
	}
}

// stallingConn stands for an HTTP/2 stream whose client stopped reading:
// Write (or FlushError) blocks until a write deadline in the past resets
// the stream, as HTTP/2's does.
type stallingConn struct {
	header     http.Header
	stallWrite bool
	healthy    bool // neither stalls (a piece before the stalled one)
	mu         sync.Mutex
	calls      []time.Time
	reset      chan struct{}
	once       sync.Once
}

var errStreamReset = errors.New("stream reset")

func (c *stallingConn) Header() http.Header { return c.header }
func (c *stallingConn) WriteHeader(int)     {}
func (c *stallingConn) Write(p []byte) (int, error) {
	if c.stallWrite && !c.healthy {
		<-c.reset
		return 0, errStreamReset
	}
	return len(p), nil
}
func (c *stallingConn) FlushError() error {
	if c.healthy {
		return nil
	}
	<-c.reset
	return errStreamReset
}
func (c *stallingConn) SetWriteDeadline(d time.Time) error {
	c.mu.Lock()
	c.calls = append(c.calls, d)
	c.mu.Unlock()
	if !d.IsZero() && d.Before(time.Now()) {
		c.once.Do(func() { close(c.reset) })
	}
	return nil
}

func TestWatchdogCutsAStalledPiece(t *testing.T) {
	for _, tc := range []struct {
		name                string
		stallWrite, healthy bool
	}{
		{"stalled in flush", false, false},
		{"stalled in write", true, false},
		// The healthy piece leaves the watchdog's timer pending at its
		// deadline, before the stalled piece's: it must check again then
		// and fire at the stalled piece's own deadline.
		{"stalled after a healthy piece", false, true},
	} {
		conn := &stallingConn{header: http.Header{}, stallWrite: tc.stallWrite, healthy: tc.healthy, reset: make(chan struct{})}
		r, idle := watchedRequest(conn, 50*time.Millisecond)
		pw := newIdlePieceWriter(idle, r).watched()
		if tc.healthy {
			if err := pw.send([]byte("healthy")); err != nil {
				t.Fatal(err)
			}
			conn.healthy = false
			// The stalled piece's deadline then lies past the pending
			// timer's (the wait is the point).
			time.Sleep(20 * time.Millisecond)
		}
		start := time.Now()
		sent := make(chan error, 1)
		go func() { sent <- pw.send([]byte("piece")) }()
		select {
		case err := <-sent:
			if !errors.Is(err, errStreamReset) {
				t.Errorf("%s: send returned %v; want the stream's reset", tc.name, err)
			}
			if took := time.Since(start); took < 50*time.Millisecond {
				t.Errorf("%s: cut after %v, before the 50 ms write idle timeout", tc.name, took)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: not cut 10 s after a 50 ms write idle timeout", tc.name)
		}
		conn.mu.Lock()
		calls := conn.calls
		conn.mu.Unlock()
		if len(calls) != 1 || !calls[0].Before(time.Now()) {
			t.Errorf("%s: deadlines set on the stream %v; want one in the past", tc.name, calls)
		}
	}
}

func TestWatchdogClosedWithTheResponse(t *testing.T) {
	conn := &deadlineConn{header: http.Header{}}
	r, idle := watchedRequest(conn, time.Minute)
	pw := newIdlePieceWriter(idle, r).watched()
	if err := pw.send([]byte("piece")); err != nil {
		t.Fatal(err)
	}
	pw.close()
	// A timer still pending would keep the response's writers reachable
	// for up to the idle timeout after the response ended.
	if pw.dog.timer == nil || pw.dog.timer.Stop() {
		t.Errorf("the watchdog's timer is still pending after close")
	}
}

// failingConn fails every write at once, as HTTP/2 does on a stream the
// client reset.
type failingConn struct{ stallingConn }

func (c *failingConn) Write([]byte) (int, error) { return 0, errStreamReset }

func TestWatchdogDisarmedAfterAFailedPiece(t *testing.T) {
	conn := &failingConn{stallingConn{header: http.Header{}, reset: make(chan struct{})}}
	r, idle := watchedRequest(conn, 10*time.Millisecond)
	pw := newIdlePieceWriter(idle, r).watched()
	if err := pw.send([]byte("piece")); !errors.Is(err, errStreamReset) {
		t.Fatalf("send returned %v", err)
	}
	// The idle writer leaves a failed write's deadline armed; the watchdog
	// must not fire it once send has returned (the handler may be gone).
	// The wait is the point of the check.
	time.Sleep(100 * time.Millisecond)
	conn.mu.Lock()
	defer conn.mu.Unlock()
	if len(conn.calls) != 0 {
		t.Errorf("deadlines set on the stream after send returned: %v", conn.calls)
	}
}
