package caddymodule

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/durable-streams-server/durable-streams-server/native"
)

// These tests drive the handler over real HTTP (loopback, port 0) against the
// real in-memory engine. They check the Go side's part: bytes and wakes get
// through, clients that leave are forgotten. Protocol details are the
// engine's and are tested there.

type engineServer struct {
	*httptest.Server
	handler *Handler
	engine  *native.Engine
}

func newEngineServer(t *testing.T, opts native.Options) *engineServer {
	t.Helper()
	e, err := native.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{MaxAppendSize: DefaultMaxAppendSize, engine: nativeEngine{e}, logger: zap.NewNop(), stopping: newStopSignal()}
	if opts.MaxAppendBytes > 0 {
		h.MaxAppendSize = opts.MaxAppendBytes
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h.ServeHTTP(w, r, nil); err != nil {
			status := http.StatusInternalServerError
			if he, ok := errors.AsType[caddyhttp.HandlerError](err); ok {
				status = he.StatusCode
			}
			http.Error(w, err.Error(), status)
		}
	}))
	t.Cleanup(func() {
		h.stopping.stop()
		srv.Close()
		e.Close()
	})
	return &engineServer{Server: srv, handler: h, engine: e}
}

func (s *engineServer) do(t *testing.T, method, path, contentType, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

func readAll(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitParked waits until the engine has n parked sessions.
// get GETs path and returns "<status> <body>", or "error: ..." — safe to
// call from a goroutine other than the test's.
func (s *engineServer) get(path string) string {
	res, err := s.Client().Get(s.URL + path)
	if err != nil {
		return "error: " + err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.Status + " " + string(b)
}

func (s *engineServer) waitParked(t *testing.T, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.engine.Stats().ParkedSessions != n {
		if time.Now().After(deadline) {
			t.Fatalf("parked sessions = %d, want %d", s.engine.Stats().ParkedSessions, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestEngineCreateAppendRead(t *testing.T) {
	s := newEngineServer(t, native.Options{})
	res := s.do(t, http.MethodPut, "/v1/stream/e2e", "text/plain", "hello ")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", res.StatusCode, readAll(t, res))
	}
	if loc := res.Header.Get("Location"); loc != s.URL+"/v1/stream/e2e" {
		t.Errorf("Location %q, want the absolute stream URL %q", loc, s.URL+"/v1/stream/e2e")
	}
	res = s.do(t, http.MethodPost, "/v1/stream/e2e", "text/plain", "world")
	if res.StatusCode/100 != 2 {
		t.Fatalf("append: %d %s", res.StatusCode, readAll(t, res))
	}
	res = s.do(t, http.MethodGet, "/v1/stream/e2e?offset=-1", "", "")
	if body := readAll(t, res); res.StatusCode != 200 || body != "hello world" {
		t.Fatalf("read: %d %q", res.StatusCode, body)
	}
	if res.ContentLength != int64(len("hello world")) {
		t.Errorf("Content-Length %d", res.ContentLength)
	}
	if st := s.engine.Stats(); st.Streams != 1 || st.BytesAppended == 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestEngineBodyTooLarge(t *testing.T) {
	s := newEngineServer(t, native.Options{MaxAppendBytes: 8})
	s.do(t, http.MethodPut, "/v1/stream/big", "text/plain", "")
	res := s.do(t, http.MethodPost, "/v1/stream/big", "text/plain", "123456789")
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("got %d, want 413", res.StatusCode)
	}
}

func TestEngineLongPollWokenByAppend(t *testing.T) {
	s := newEngineServer(t, native.Options{LongPollTimeout: 10 * time.Second})
	res := s.do(t, http.MethodPut, "/v1/stream/lp", "text/plain", "")
	tail := res.Header.Get("Stream-Next-Offset")
	if res.StatusCode != http.StatusCreated || tail == "" {
		t.Fatalf("create: %d, Stream-Next-Offset %q", res.StatusCode, tail)
	}

	// Many readers, one append: every one is woken.
	const readers = 20
	var wg sync.WaitGroup
	bodies := make(chan string, readers)
	for range readers {
		wg.Go(func() { bodies <- s.get("/v1/stream/lp?offset=" + tail + "&live=long-poll") })
	}
	s.waitParked(t, readers)
	start := time.Now()
	s.do(t, http.MethodPost, "/v1/stream/lp", "text/plain", "news")
	wg.Wait()
	close(bodies)
	for b := range bodies {
		if b != "200 OK news" {
			t.Errorf("reader got %q", b)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("readers took %v to wake", d)
	}
	s.waitParked(t, 0)
}

// A catch-up GET takes no session (it cannot park), so the handler decides
// from the query whether to register one. The engine decodes parameter
// names, so a long-poll spelled with an escape must still be served live.
func TestEngineLongPollEscapedName(t *testing.T) {
	s := newEngineServer(t, native.Options{LongPollTimeout: 10 * time.Second})
	res := s.do(t, http.MethodPut, "/v1/stream/esc", "text/plain", "")
	tail := res.Header.Get("Stream-Next-Offset")
	got := make(chan string, 1)
	go func() { got <- s.get("/v1/stream/esc?offset=" + tail + "&l%69ve=long-poll") }()
	s.waitParked(t, 1)
	s.do(t, http.MethodPost, "/v1/stream/esc", "text/plain", "later")
	if b := <-got; b != "200 OK later" {
		t.Errorf("escaped long-poll got %q, want 200 OK later", b)
	}

	// And a plain catch-up read is answered at once.
	res = s.do(t, http.MethodGet, "/v1/stream/esc?offset=-1", "", "")
	if b, _ := io.ReadAll(res.Body); res.StatusCode != http.StatusOK || string(b) != "later" {
		t.Errorf("catch-up read: %d %q", res.StatusCode, b)
	}
	s.waitParked(t, 0)
}

func TestEngineLongPollTimeout(t *testing.T) {
	s := newEngineServer(t, native.Options{LongPollTimeout: 200 * time.Millisecond})
	res := s.do(t, http.MethodPut, "/v1/stream/quiet", "text/plain", "")
	tail := res.Header.Get("Stream-Next-Offset")
	res = s.do(t, http.MethodGet, "/v1/stream/quiet?offset="+tail+"&live=long-poll", "", "")
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("got %d, want the engine's 204 timeout", res.StatusCode)
	}
	s.waitParked(t, 0)
}

func TestEngineLongPollClientGone(t *testing.T) {
	s := newEngineServer(t, native.Options{LongPollTimeout: time.Minute})
	res := s.do(t, http.MethodPut, "/v1/stream/gone", "text/plain", "")
	tail := res.Header.Get("Stream-Next-Offset")

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/v1/stream/gone?offset="+tail+"&live=long-poll", nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if res, err := s.Client().Do(req); err == nil {
			res.Body.Close()
		}
	}()
	s.waitParked(t, 1)
	cancel()
	<-done
	s.waitParked(t, 0) // the handler cancelled the session promptly
}

func TestEngineLongPollConfigStopping(t *testing.T) {
	s := newEngineServer(t, native.Options{LongPollTimeout: time.Minute})
	res := s.do(t, http.MethodPut, "/v1/stream/reload", "text/plain", "")
	tail := res.Header.Get("Stream-Next-Offset")
	got := make(chan int, 1)
	go func() {
		res, err := s.Client().Get(s.URL + "/v1/stream/reload?offset=" + tail + "&live=long-poll")
		if err != nil {
			got <- -1
			return
		}
		res.Body.Close()
		got <- res.StatusCode
	}()
	s.waitParked(t, 1)
	s.handler.stopping.stop()
	select {
	case status := <-got:
		if status != http.StatusNoContent {
			t.Errorf("got %d, want the engine's 204 timeout answer", status)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a stopping config left the long-poll open")
	}
}

func TestEngineSSE(t *testing.T) {
	s := newEngineServer(t, native.Options{SSEReconnectInterval: time.Minute})
	s.do(t, http.MethodPut, "/v1/stream/sse", "text/plain", "first")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/v1/stream/sse?offset=-1&live=sse", nil)
	res, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("got %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitLine(t, lines, "data:first") // flushed before anything else happens
	s.waitParked(t, 1)
	s.do(t, http.MethodPost, "/v1/stream/sse", "text/plain", "second")
	waitLine(t, lines, "data:second") // pushed by the wake

	cancel() // the client leaves: the session is forgotten
	s.waitParked(t, 0)
}

func waitLine(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("stream ended before %q", want)
			}
			if strings.ReplaceAll(l, " ", "") == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %q line", want)
		}
	}
}

func TestEngineClosedAnswers503(t *testing.T) {
	s := newEngineServer(t, native.Options{})
	s.engine.Close()
	res := s.do(t, http.MethodGet, "/v1/stream/x?offset=-1", "", "")
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("got %d, want 503", res.StatusCode)
	}
}
