package caddymodule

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/durable-streams-server/durable-streams-server/native"
)

// These tests run the handler over real connections against the real
// engine with its fan-out thread, and check who serves an SSE response:
// the engine (takeover) or a goroutine (every case where it must not).

type serverSetup struct {
	takeover *bool                               // the handler's sse_takeover
	wrap     func(http.Handler) http.Handler     // middleware in front of it
	start    func(*httptest.Server)              // default: Start (plain HTTP/1.1)
	client   func(*httptest.Server) *http.Client // default: the server's
	engine   *native.Engine                      // default: a fresh one
}

type takeoverServer struct {
	*httptest.Server
	handler *Handler
	engine  *native.Engine
	client  *http.Client
}

func startServer(t *testing.T, setup serverSetup) *takeoverServer {
	t.Helper()
	e := setup.engine
	if e == nil {
		var err error
		if e, err = native.Open(native.Options{SSEReconnectInterval: time.Minute}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
	}
	h := &Handler{MaxAppendSize: DefaultMaxAppendSize, SSETakeover: setup.takeover, engine: nativeEngine{e},
		logger: zap.NewNop(), stopping: newStopSignal(), owner: handlerOwners.Add(1)}
	var next http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h.ServeHTTP(w, r, nil); err != nil {
			status := http.StatusInternalServerError
			if he, ok := errors.AsType[caddyhttp.HandlerError](err); ok {
				status = he.StatusCode
			}
			http.Error(w, err.Error(), status)
		}
	})
	if setup.wrap != nil {
		next = setup.wrap(next)
	}
	srv := httptest.NewUnstartedServer(next)
	if setup.start != nil {
		setup.start(srv)
	} else {
		srv.Start()
	}
	client := srv.Client()
	if setup.client != nil {
		client = setup.client(srv)
	}
	t.Cleanup(func() {
		h.stop()
		srv.Close()
	})
	return &takeoverServer{Server: srv, handler: h, engine: e, client: client}
}

func (s *takeoverServer) send(t *testing.T, method, path, body string) {
	t.Helper()
	req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "text/plain")
	res, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d", method, path, res.StatusCode)
	}
}

// sseStream is an open SSE response: its lines, and how its body ended.
type sseStream struct {
	res    *http.Response
	lines  chan string
	ended  chan error // nil: the body ended cleanly (terminating chunk)
	cancel context.CancelFunc
}

func (s *takeoverServer) subscribe(t *testing.T, path string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path+"?offset=-1&live=sse", nil)
	res, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("SSE: %d", res.StatusCode)
	}
	st := &sseStream{res: res, lines: make(chan string, 100), ended: make(chan error, 1), cancel: cancel}
	go func() {
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			st.lines <- sc.Text()
		}
		close(st.lines)
		st.ended <- sc.Err()
	}()
	return st
}

// endedCleanly waits for the body to end; a connection closed without the
// terminating chunk reads as io.ErrUnexpectedEOF.
func (st *sseStream) endedCleanly(t *testing.T) {
	t.Helper()
	for range st.lines {
	}
	select {
	case err := <-st.ended:
		if err != nil {
			t.Fatalf("the SSE body ended with %v, want its terminating chunk", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the SSE response did not end")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (s *takeoverServer) waitStats(t *testing.T, parked, adopted uint64) {
	t.Helper()
	waitFor(t, "parked/adopted sessions", func() bool {
		st := s.engine.Stats()
		return st.ParkedSessions == parked && st.AdoptedSessions == adopted
	})
}

func TestTakeoverOnPlainHTTP1(t *testing.T) {
	opts := native.Options{StreamRoot: "/takeover-test", SSEReconnectInterval: time.Minute}
	key := poolKey(opts)
	pooled, _, err := loadEngine(key, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer releaseEngine(key)
	s := startServer(t, serverSetup{engine: pooled.Engine})
	s.send(t, http.MethodPut, "/v1/stream/t", "first")

	st := s.subscribe(t, "/v1/stream/t")
	if got := st.res.TransferEncoding; len(got) != 1 || got[0] != "chunked" {
		t.Errorf("Transfer-Encoding %v, want chunked", got)
	}
	if !st.res.Close {
		t.Error("no Connection: close; the engine closes the connection when the response ends")
	}
	if cc := st.res.Header.Get("Cache-Control"); cc != "no-cache, no-transform" {
		t.Errorf("Cache-Control %q", cc)
	}
	waitLine(t, st.lines, "data:first")
	s.waitStats(t, 1, 1)
	waitFor(t, "the handler's goroutine to return", func() bool { return liveStreams.Load() == 0 })

	// The metric still counts the session.
	reg := prometheus.NewPedanticRegistry()
	if err := registerMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "caddy_durable_streams_adopted_sessions"); err != nil || n == 0 {
		t.Errorf("adopted_sessions not exported (%d, %v)", n, err)
	}
	expected := `
# HELP caddy_durable_streams_live_sessions Live reads in progress (long-poll waits and SSE connections, including those the engine took over).
# TYPE caddy_durable_streams_live_sessions gauge
caddy_durable_streams_live_sessions{mode="long_poll"} 0
caddy_durable_streams_live_sessions{mode="sse"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected), "caddy_durable_streams_live_sessions"); err != nil {
		t.Error(err)
	}

	s.send(t, http.MethodPost, "/v1/stream/t", "second")
	waitLine(t, st.lines, "data:second") // written by the engine's thread

	st.cancel() // the client leaves: the engine notices and forgets it
	s.waitStats(t, 0, 0)
}

// withHeaders is middleware that sets response headers and wraps the
// ResponseWriter the way Caddy's do (Unwrap, no Hijack of its own).
func withHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "https://app.example")
		w.Header().Set("X-Request-Id", "abc")
		next.ServeHTTP(unwrapper{w}, r)
	})
}

type unwrapper struct{ http.ResponseWriter }

func (u unwrapper) Unwrap() http.ResponseWriter { return u.ResponseWriter }

func TestTakeoverKeepsEarlierMiddlewaresHeaders(t *testing.T) {
	s := startServer(t, serverSetup{wrap: withHeaders})
	s.send(t, http.MethodPut, "/v1/stream/h", "first")
	st := s.subscribe(t, "/v1/stream/h")
	waitLine(t, st.lines, "data:first")
	s.waitStats(t, 1, 1)
	for name, want := range map[string]string{
		"Access-Control-Allow-Origin": "https://app.example", // the user's CORS rule wins
		"X-Request-Id":                "abc",
		"Content-Type":                "text/event-stream",
		"X-Content-Type-Options":      "nosniff",
	} {
		if got := st.res.Header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	s.send(t, http.MethodPost, "/v1/stream/h", "second")
	waitLine(t, st.lines, "data:second")
}

// encodes plays a compressing middleware: it announces an encoding the
// engine's bytes would not have.
func encodes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(encodingWriter{w}, r)
	})
}

type encodingWriter struct{ http.ResponseWriter }

func (e encodingWriter) WriteHeader(status int) {
	e.Header().Set("Content-Encoding", "x-test")
	e.ResponseWriter.WriteHeader(status)
}

func (e encodingWriter) Unwrap() http.ResponseWriter { return e.ResponseWriter }

func TestTakeoverFallsBackToGoWhereItMustNot(t *testing.T) {
	h2c := func(srv *httptest.Server) {
		srv.Config.Protocols = new(http.Protocols)
		srv.Config.Protocols.SetHTTP1(true)
		srv.Config.Protocols.SetUnencryptedHTTP2(true)
		srv.Start()
	}
	h2cClient := func(*httptest.Server) *http.Client {
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		return &http.Client{Transport: tr}
	}
	tlsHTTP1 := func(srv *httptest.Server) *http.Client {
		tr := srv.Client().Transport.(*http.Transport).Clone()
		tr.ForceAttemptHTTP2 = false
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		return &http.Client{Transport: tr}
	}
	for _, tc := range []struct {
		name  string
		setup serverSetup
		proto int
	}{
		{"HTTP/2 over TLS", serverSetup{start: func(s *httptest.Server) { s.EnableHTTP2 = true; s.StartTLS() }}, 2},
		{"HTTP/1.1 over TLS", serverSetup{start: (*httptest.Server).StartTLS, client: tlsHTTP1}, 1},
		{"h2c", serverSetup{start: h2c, client: h2cClient}, 2},
		{"sse_takeover off", serverSetup{takeover: new(false)}, 1},
		{"a middleware encodes the body", serverSetup{wrap: encodes}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.setup)
			s.send(t, http.MethodPut, "/v1/stream/f", "first")
			st := s.subscribe(t, "/v1/stream/f")
			if st.res.ProtoMajor != tc.proto {
				t.Fatalf("served over HTTP/%d, want HTTP/%d", st.res.ProtoMajor, tc.proto)
			}
			waitLine(t, st.lines, "data:first")
			s.waitStats(t, 1, 0) // parked, not adopted: a goroutine serves it
			s.send(t, http.MethodPost, "/v1/stream/f", "second")
			waitLine(t, st.lines, "data:second")
			st.cancel()
			s.waitStats(t, 0, 0)
		})
	}
}

// hidingListener hands out connections that do not expose their socket,
// as an unknown listener wrapper would.
type hidingListener struct{ net.Listener }

func (l hidingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return struct{ net.Conn }{c}, nil
}

func TestTakeoverStreamsInGoWhenTheSocketIsHidden(t *testing.T) {
	s := startServer(t, serverSetup{start: func(srv *httptest.Server) {
		srv.Listener = hidingListener{srv.Listener}
		srv.Start()
	}})
	s.send(t, http.MethodPut, "/v1/stream/w", "first")

	leaving := s.subscribe(t, "/v1/stream/w")
	staying := s.subscribe(t, "/v1/stream/w")
	waitLine(t, leaving.lines, "data:first")
	waitLine(t, staying.lines, "data:first")
	s.waitStats(t, 2, 0)

	leaving.cancel() // noticed by reading the hijacked connection
	s.waitStats(t, 1, 0)

	s.send(t, http.MethodPost, "/v1/stream/w", "second")
	waitLine(t, staying.lines, "data:second") // chunk-framed by hand
	s.handler.stop()
	staying.endedCleanly(t)
	s.waitStats(t, 0, 0)
}

func TestTakeoverEndsAdoptedSessionsWhenTheConfigStops(t *testing.T) {
	s := startServer(t, serverSetup{})
	other := startServer(t, serverSetup{engine: s.engine}) // e.g. the next config
	s.send(t, http.MethodPut, "/v1/stream/r", "first")
	mine := s.subscribe(t, "/v1/stream/r")
	theirs := other.subscribe(t, "/v1/stream/r")
	waitLine(t, mine.lines, "data:first")
	waitLine(t, theirs.lines, "data:first")
	s.waitStats(t, 2, 2)

	s.handler.stop()
	mine.endedCleanly(t)
	s.waitStats(t, 1, 1)
	s.send(t, http.MethodPost, "/v1/stream/r", "second")
	waitLine(t, theirs.lines, "data:second")
}
