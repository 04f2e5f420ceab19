package caddymodule

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/durable-streams-server/durable-streams-server/native"
)

func TestPoolSharesAndClosesOnce(t *testing.T) {
	opts := native.Options{StreamRoot: "/pool-test"}
	key := poolKey(opts)
	if key != "memory:/pool-test" {
		t.Fatalf("key %q", key)
	}
	a, loadedA, err := loadEngine(key, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, loadedB, err := loadEngine(key, native.Options{StreamRoot: "/pool-test", LongPollTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if loadedA || !loadedB || a != b {
		t.Fatalf("second load did not share the first engine (loaded %v %v)", loadedA, loadedB)
	}
	if b.opts != opts {
		t.Errorf("the first opener's options should stay in force, got %+v", b.opts)
	}
	if err := releaseEngine(key); err != nil {
		t.Fatal(err)
	}
	var req native.Request
	req.Set(native.FieldMethod, "GET")
	req.Set(native.FieldPath, "/pool-test/x")
	if r, err := a.Handle(&req, 0); err != nil {
		t.Fatalf("engine closed while still in use: %v", err)
	} else {
		r.Release()
	}
	if err := releaseEngine(key); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Handle(&req, 0); err != native.ErrClosed {
		t.Fatalf("after the last release: %v, want ErrClosed", err)
	}
	if n, ok := engines.References(key); ok {
		t.Fatalf("pool still holds %s (%d references)", key, n)
	}
}

// TestCaddyReload runs the module inside Caddy itself: provisioning through
// the pool, a reload that keeps the in-memory engine while ending the old
// config's long-polls promptly, and a stop that closes the engine.
func TestCaddyReload(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	addr := freeLoopbackAddr(t)
	base := "http://" + addr

	load := func(longPoll string) {
		t.Helper()
		cfg := fmt.Sprintf(`{
			"admin": {"disabled": true, "config": {"persist": false}},
			"apps": {"http": {"servers": {"test": {
				"listen": [%q],
				"automatic_https": {"disable": true},
				"routes": [{
					"match": [{"path": ["/v1/stream/*"]}],
					"handle": [{"handler": "durable_streams", "long_poll_timeout": %q}]
				}]
			}}}}
		}`, addr, longPoll)
		if err := caddy.Load([]byte(cfg), true); err != nil {
			t.Fatalf("load: %v", err)
		}
	}
	load("1m")
	t.Cleanup(func() { _ = caddy.Stop() })

	res := mustDo(t, http.MethodPut, base+"/v1/stream/reloaded", "kept")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d", res.StatusCode)
	}
	tail := res.Header.Get("Stream-Next-Offset")

	poll := make(chan int, 1)
	go func() {
		res, err := http.Get(base + "/v1/stream/reloaded?offset=" + tail + "&live=long-poll")
		if err != nil {
			poll <- -1
			return
		}
		res.Body.Close()
		poll <- res.StatusCode
	}()
	waitPooledParked(t, "memory:/v1/stream", 1)

	load("30s") // a reload with other options: same storage, same engine
	select {
	case status := <-poll:
		if status != http.StatusNoContent {
			t.Errorf("the old config's long-poll got %d, want the engine's 204", status)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the reload left the old config's long-poll waiting")
	}

	// The old config's server closed its connections; don't reuse a pooled
	// one that may be half-closed (a reset here says nothing about storage).
	http.DefaultClient.CloseIdleConnections()
	res = mustDo(t, http.MethodGet, base+"/v1/stream/reloaded?offset=-1", "")
	if body, _ := io.ReadAll(res.Body); string(body) != "kept" {
		t.Errorf("after the reload the stream holds %q, want the in-memory data kept", body)
	}
	// The old config's share of the engine ends when its last request does;
	// a long-poll the engine took over counts until the engine gives its
	// connection back, which it does from one of its own threads, so the
	// release may land a moment after the client has its answer.
	if !awaitReferences(t, "memory:/v1/stream", 1) {
		n, _ := engines.References("memory:/v1/stream")
		t.Errorf("after the reload the engine has %d users, want 1", n)
	}

	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	if !awaitReferences(t, "memory:/v1/stream", 0) {
		t.Error("the engine is still open after Caddy stopped")
	}
}

// awaitReferences waits up to 5 s for the pooled engine under key to have n
// users (0: closed and out of the pool).
func awaitReferences(t *testing.T, key string, n int) bool {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, ok := engines.References(key)
		if (n == 0 && !ok) || (n > 0 && ok && got == n) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mustDo(t *testing.T, method, url, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "text/plain")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

func waitPooledParked(t *testing.T, key string, n uint64) {
	t.Helper()
	waitPooledStat(t, key, "parked", func(st native.Stats) uint64 { return st.ParkedSessions }, n)
}

// waitPooledStat waits until stat of the pooled engine at key is n.
func waitPooledStat(t *testing.T, key, what string, stat func(native.Stats) uint64, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got uint64
		rangeEngines(func(k string, e *native.Engine) {
			if k == key {
				got = stat(e.Stats())
			}
		})
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %s sessions, want %d", key, got, what, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// freeLoopbackAddr picks a free loopback port (Caddy cannot report the port
// it chose for :0).
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestCaddyTakeoverBehindMiddleware runs an SSE response through Caddy with
// the middleware production configs have in front of it (access log,
// metrics, a CORS header): the engine still takes the connection over, the
// headers are there, a reload that keeps the storage leaves it streaming,
// and stopping the server ends it cleanly so the client reconnects.
func TestCaddyTakeoverBehindMiddleware(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	addr := freeLoopbackAddr(t)
	base := "http://" + addr
	load := func() {
		t.Helper()
		cfg := adapt(t, fmt.Sprintf(`{
	admin off
	metrics
}

http://%s {
	log {
		output discard
	}
	header Access-Control-Allow-Origin https://app.example
	route /v1/stream/* {
		durable_streams
	}
}
`, addr))
		if err := caddy.Load([]byte(cfg), true); err != nil {
			t.Fatalf("load: %v", err)
		}
	}
	load()
	t.Cleanup(func() { _ = caddy.Stop() })

	mustDo(t, http.MethodPut, base+"/v1/stream/mw", "first")
	res, err := http.Get(base + "/v1/stream/mw?offset=-1&live=sse")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if got := res.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
		t.Errorf("Access-Control-Allow-Origin %q, want the header directive's", got)
	}
	lines := make(chan string, 100)
	ended := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		ended <- sc.Err()
	}()
	waitLine(t, lines, "data:first")
	waitPooledAdopted(t, "memory:/v1/stream", 1)
	mustDo(t, http.MethodPost, base+"/v1/stream/mw", "second")
	waitLine(t, lines, "data:second")

	// The engine outlives the old config: its adopted session streams on.
	load()
	http.DefaultClient.CloseIdleConnections() // the old server closed them
	mustDo(t, http.MethodPost, base+"/v1/stream/mw", "third")
	waitLine(t, lines, "data:third")
	waitPooledAdopted(t, "memory:/v1/stream", 1)

	if err := caddy.Stop(); err != nil { // the last config: the session ends
		t.Fatal(err)
	}
	for range lines {
	}
	if err := <-ended; err != nil {
		t.Errorf("the SSE body ended with %v, want its terminating chunk", err)
	}
	if !awaitReferences(t, "memory:/v1/stream", 0) {
		t.Error("the engine is still open after Caddy stopped")
	}
}

func waitPooledAdopted(t *testing.T, key string, n uint64) {
	t.Helper()
	waitPooledStat(t, key, "adopted", func(st native.Stats) uint64 { return st.AdoptedSessions }, n)
}
