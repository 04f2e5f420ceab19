package caddymodule

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// deadlineConn stands for HTTP/2's responseWriter: it records the write
// deadlines set on it, and what was written and flushed under which one.
type deadlineConn struct {
	header   http.Header
	deadline time.Time
	calls    []time.Time // every SetWriteDeadline
	log      []string
	buf      bytes.Buffer
}

func (c *deadlineConn) Header() http.Header { return c.header }
func (c *deadlineConn) WriteHeader(int)     {}
func (c *deadlineConn) Write(p []byte) (int, error) {
	c.log = append(c.log, "write armed="+armed(c.deadline))
	return c.buf.Write(p)
}
func (c *deadlineConn) FlushError() error {
	c.log = append(c.log, "flush armed="+armed(c.deadline))
	return nil
}
func (c *deadlineConn) SetWriteDeadline(d time.Time) error {
	c.deadline = d
	c.calls = append(c.calls, d)
	return nil
}

func armed(d time.Time) string {
	if d.IsZero() {
		return "no"
	}
	return "yes"
}

// idleRequest returns a request whose context carries an idle writer over
// conn the way Caddy's server sets one up for HTTP/2.
func idleRequest(conn *deadlineConn, minRate int64, clear bool) (*http.Request, *caddyhttp.IdleTimeoutWriter) {
	idle := &caddyhttp.IdleTimeoutWriter{
		ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: conn},
		Ctrl:                  http.NewResponseController(conn),
		Deadline:              caddyhttp.IdleDeadline{Start: time.Now(), Timeout: time.Minute, MinRate: minRate},
		Logger:                zap.NewNop(),
		ClearBetweenWrites:    clear,
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	return r.WithContext(caddyhttp.ContextWithIdleTimeouts(r.Context(), nil, idle)), idle
}

func TestIdlePieceWriterOnlyWhereItApplies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		minRate int64
		clear   bool
		wrap    func(http.ResponseWriter) http.ResponseWriter
		want    bool
	}{
		{"HTTP/2, the idle writer itself", 0, true, nil, true},
		{"HTTP/2, under a pass-through wrapper", 0, true, func(w http.ResponseWriter) http.ResponseWriter {
			return &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}
		}, true},
		{"HTTP/2, under unknown middleware", 0, true, func(w http.ResponseWriter) http.ResponseWriter { return wrapping{w} }, false},
		{"a minimum rate", 100, true, nil, false},
		{"no clearing between writes (HTTP/1, HTTP/3)", 0, false, nil, false},
	} {
		conn := &deadlineConn{header: http.Header{}}
		r, idle := idleRequest(conn, tc.minRate, tc.clear)
		var w http.ResponseWriter = idle
		if tc.wrap != nil {
			w = tc.wrap(w)
		}
		if got := newIdlePieceWriter(w, r) != nil; got != tc.want {
			t.Errorf("%s: one window %v, want %v", tc.name, got, tc.want)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if newIdlePieceWriter(httptest.NewRecorder(), r) != nil {
		t.Errorf("no idle writer: one window, want the ordinary path")
	}
}

func TestIdlePieceWriterArmsOnceAndClearsOnce(t *testing.T) {
	conn := &deadlineConn{header: http.Header{}}
	r, idle := idleRequest(conn, 0, true)
	var w http.ResponseWriter = &caddyhttp.ResponseWriterWrapper{ResponseWriter: idle}
	pw := newIdlePieceWriter(w, r)
	if pw == nil {
		t.Fatal("no one-window writer over HTTP/2's idle writer")
	}
	piece := strings.Repeat("p", 100)
	for range 2 {
		conn.calls, conn.log = nil, nil
		if err := pw.send([]byte(piece)); err != nil {
			t.Fatal(err)
		}
		if len(conn.calls) != 2 || conn.calls[0].IsZero() || !conn.calls[1].IsZero() {
			t.Errorf("deadlines set %v; want one armed, then cleared", conn.calls)
		}
		if got, want := strings.Join(conn.log, ", "), "write armed=yes, flush armed=yes"; got != want {
			t.Errorf("%s; want %s", got, want)
		}
		if !idle.ClearBetweenWrites {
			t.Errorf("the idle writer no longer clears between writes")
		}
	}
	if conn.buf.String() != piece+piece {
		t.Errorf("wrote %q", conn.buf.String())
	}
}
