package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Issue requirement: "Waiting never costs an OS thread: 2,000 concurrent
// long-poll readers plus 2,000 SSE readers on one server keep its thread
// count (Threads in /proc/PID/status) under 100, and one append reaches every
// one of them. A client that disconnects is unregistered."

const (
	longPollReaders = 2000
	sseReaders      = 2000
	disconnecters   = 500 // long-polls opened and then abandoned
	maxThreads      = 100
)

const threadsCaddyfile = `{
	admin off
	auto_https off
	grace_period 1s
}

http://127.0.0.1:%d {
	handle /health {
		respond "OK" 200
	}
	handle /metrics {
		metrics
	}
	route /v1/stream/* {
		durable_streams {
			long_poll_timeout 120s
			sse_reconnect_interval 600s
		}
	}
}
`

// Prometheus metrics from caddymodule/metrics.go.
const (
	metricLive   = "caddy_durable_streams_live_sessions"   // {mode="long_poll"|"sse"}
	metricParked = "caddy_durable_streams_parked_sessions" // engine-side, {storage=...}
)

func TestWaitingCostsNoThreads(t *testing.T) {
	binary(t)
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/PID/status")
	}
	if testing.Short() {
		t.Skip("opens 4,500 connections; skipped with -short")
	}
	raiseNoFile(t, 3*(longPollReaders+sseReaders+disconnecters)+1024)
	var env []string
	if runtime.NumCPU() > 48 {
		// Go runs about one thread per CPU when busy; on very large machines
		// that alone approaches the budget, which is about waiting.
		env = append(env, "GOMAXPROCS=16")
		t.Logf("%d CPUs: running the server with GOMAXPROCS=16", runtime.NumCPU())
	}
	srv := startCaddyfile(t, threadsCaddyfile, env...)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ctl := &http.Client{Timeout: 30 * time.Second}
	stream := srv.base + "/v1/stream/x"

	tail := put(t, ctl, stream)
	// With /metrics, wait for the server's own session counts; the gauge
	// has no samples before its first session, so they are awaited, not
	// checked here.
	_, haveMetrics := srv.metrics(ctl)
	if !haveMetrics {
		t.Logf("GET /metrics is not served; checking parking and unregistration indirectly")
	}

	// Phase 1: park 2,000 long-polls and 2,000 SSE readers at the tail.
	tr := liveTransport(longPollReaders + sseReaders + disconnecters)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	lpCtx, lpCancel := context.WithCancel(ctx)
	defer lpCancel()
	polls := make([]pollResult, longPollReaders)
	var pollsDone sync.WaitGroup
	for i := range polls {
		pollsDone.Add(1)
		go func() {
			defer pollsDone.Done()
			polls[i] = longPoll(lpCtx, client, stream, tail)
		}()
	}

	sseCtx, sseCancel := context.WithCancel(ctx)
	defer sseCancel()
	readers := make([]*sseReader, sseReaders)
	var sseDone sync.WaitGroup
	for i := range readers {
		r := newSSEReader()
		readers[i] = r
		sseDone.Add(1)
		go func() {
			defer sseDone.Done()
			r.run(sseCtx, client, stream+"?offset="+tail+"&live=sse")
		}()
	}

	// Wait until every SSE reader has its first control event and (with
	// metrics) the server counts every session as live and parked.
	waitAll(t, ctx, "SSE readers to receive their first control event", readers, func(r *sseReader) <-chan struct{} { return r.ready })
	if haveMetrics {
		srv.waitMetric(t, ctx, ctl, "all long-polls live", metricLive, longPollReaders, `mode="long_poll"`)
		srv.waitMetric(t, ctx, ctl, "all SSE readers live", metricLive, sseReaders, `mode="sse"`)
		srv.waitMetricIfPresent(t, ctx, ctl, "all sessions parked in the engine", metricParked, longPollReaders+sseReaders)
	} else {
		settle(t, ctx, srv)
	}
	parkedThreads := srv.threads()
	t.Logf("%d long-poll + %d SSE readers parked: server has %d threads", longPollReaders, sseReaders, parkedThreads)
	if parkedThreads >= maxThreads {
		t.Errorf("server has %d threads with %d sessions parked; want < %d", parkedThreads, longPollReaders+sseReaders, maxThreads)
	}

	// Phase 2: one append wakes every one of them.
	start := time.Now()
	tail = post(t, ctl, stream, "hello")
	waitGroup(t, ctx, "long-polls to return", &pollsDone)
	waitAll(t, ctx, `SSE readers to receive "hello"`, readers, func(r *sseReader) <-chan struct{} { return r.event("hello") })
	t.Logf("one append reached %d long-polls and %d SSE readers in %v", longPollReaders, sseReaders, time.Since(start).Round(time.Millisecond))
	bad := 0
	for i, p := range polls {
		if p.err != nil || p.status != http.StatusOK || p.body != "hello" {
			if bad < 5 {
				t.Errorf("long-poll %d: status %d body %q err %v; want 200 %q", i, p.status, p.body, p.err, "hello")
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d long-polls did not get the append", bad, longPollReaders)
	}
	wokenThreads := srv.threads()
	t.Logf("after waking all %d sessions: server has %d threads", longPollReaders+sseReaders, wokenThreads)
	if wokenThreads >= maxThreads {
		t.Errorf("server has %d threads after one append woke %d sessions; want < %d", wokenThreads, longPollReaders+sseReaders, maxThreads)
	}

	// Phase 3: long-polls whose clients disconnect are unregistered.
	dcCtx, dcCancel := context.WithCancel(ctx)
	var dcDone sync.WaitGroup
	dcResults := make([]pollResult, disconnecters)
	for i := range disconnecters {
		dcDone.Add(1)
		go func() {
			defer dcDone.Done()
			dcResults[i] = longPoll(dcCtx, client, stream, tail)
		}()
	}
	if haveMetrics {
		srv.waitMetric(t, ctx, ctl, "abandoned long-polls live", metricLive, disconnecters, `mode="long_poll"`)
		srv.waitMetricIfPresent(t, ctx, ctl, "abandoned long-polls parked", metricParked, disconnecters+sseReaders)
	} else {
		settle(t, ctx, srv)
	}
	dcCancel()
	waitGroup(t, ctx, "abandoned long-polls to return on the client side", &dcDone)
	for i, r := range dcResults {
		if r.err == nil {
			t.Errorf("abandoned long-poll %d returned %d %q before it was cancelled", i, r.status, r.body)
			break
		}
	}
	if haveMetrics {
		srv.waitMetric(t, ctx, ctl, "disconnected long-polls unregistered (live)", metricLive, 0, `mode="long_poll"`)
		srv.waitMetricIfPresent(t, ctx, ctl, "disconnected long-polls unregistered (engine)", metricParked, sseReaders)
	} else {
		settle(t, ctx, srv)
	}

	// The wake path still works after the disconnects: one more append
	// reaches every SSE reader and a fresh long-poll.
	fresh := make(chan pollResult, 1)
	go func() { fresh <- longPoll(ctx, client, stream, tail) }()
	if haveMetrics {
		srv.waitMetric(t, ctx, ctl, "fresh long-poll live", metricLive, 1, `mode="long_poll"`)
	}
	post(t, ctl, stream, "world")
	waitAll(t, ctx, `SSE readers to receive "world"`, readers, func(r *sseReader) <-chan struct{} { return r.event("world") })
	select {
	case r := <-fresh:
		if r.err != nil || r.status != http.StatusOK || r.body != "world" {
			t.Errorf("long-poll after disconnects: status %d body %q err %v; want 200 %q", r.status, r.body, r.err, "world")
		}
	case <-ctx.Done():
		t.Fatalf("long-poll after disconnects did not return")
	}

	// SSE readers that disconnect are unregistered too.
	sseCancel()
	waitGroup(t, ctx, "SSE readers to stop", &sseDone)
	if haveMetrics {
		srv.waitMetric(t, ctx, ctl, "disconnected SSE readers unregistered (live)", metricLive, 0, `mode="sse"`)
		srv.waitMetricIfPresent(t, ctx, ctl, "all sessions unregistered (engine)", metricParked, 0)
	}
	finalThreads := srv.threads()
	t.Logf("after %d disconnects: server has %d threads", disconnecters+sseReaders, finalThreads)
	if finalThreads >= maxThreads {
		t.Errorf("server has %d threads at the end; want < %d", finalThreads, maxThreads)
	}
	if !srv.Alive() {
		t.Fatalf("server exited during the test")
	}
}

// liveTransport allows n concurrent connections to one host and dials at
// most 64 at a time, so the listen backlog never overflows.
func liveTransport(n int) *http.Transport {
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	sem := make(chan struct{}, 64)
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			defer func() { <-sem }()
			return dialer.DialContext(ctx, network, addr)
		},
		MaxConnsPerHost:     0, // no limit
		MaxIdleConns:        n,
		MaxIdleConnsPerHost: n,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
}

func put(t *testing.T, c *http.Client, url string) (tail string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, nil)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT %s: %d %q; want 201", url, resp.StatusCode, body)
	}
	if tail = resp.Header.Get("Stream-Next-Offset"); tail == "" {
		t.Fatalf("PUT %s: no Stream-Next-Offset", url)
	}
	return tail
}

func post(t *testing.T, c *http.Client, url, body string) (tail string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "text/plain")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST %s: %d %q; want 200 or 204", url, resp.StatusCode, b)
	}
	if tail = resp.Header.Get("Stream-Next-Offset"); tail == "" {
		t.Fatalf("POST %s: no Stream-Next-Offset", url)
	}
	return tail
}

type pollResult struct {
	status int
	body   string
	err    error
}

func longPoll(ctx context.Context, c *http.Client, stream, offset string) (r pollResult) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, stream+"?offset="+offset+"&live=long-poll", nil)
	if err != nil {
		return pollResult{err: err}
	}
	resp, err := c.Do(req)
	if err != nil {
		return pollResult{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return pollResult{status: resp.StatusCode, body: string(b), err: err}
}

// sseReader follows one SSE connection and records what arrives.
type sseReader struct {
	ready chan struct{} // closed at the first control event

	mu     sync.Mutex
	data   map[string]chan struct{} // closed when a data event with that payload arrives
	err    error
	status int
}

func newSSEReader() *sseReader {
	return &sseReader{ready: make(chan struct{}), data: map[string]chan struct{}{}}
}

func (r *sseReader) event(payload string) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.eventLocked(payload)
}

func (r *sseReader) eventLocked(payload string) chan struct{} {
	ch, ok := r.data[payload]
	if !ok {
		ch = make(chan struct{})
		r.data[payload] = ch
	}
	return ch
}

func (r *sseReader) describe() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("status %d, err %v", r.status, r.err)
}

func (r *sseReader) run(ctx context.Context, c *http.Client, url string) {
	fail := func(status int, err error) {
		r.mu.Lock()
		r.status, r.err = status, err
		r.mu.Unlock()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fail(0, err)
		return
	}
	resp, err := c.Do(req)
	if err != nil {
		fail(0, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		fail(resp.StatusCode, fmt.Errorf("Content-Type %q", resp.Header.Get("Content-Type")))
		return
	}
	sc := bufio.NewScanner(resp.Body)
	var event string
	var data []string
	readyClosed := false
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		switch {
		case line == "":
			switch event {
			case "control":
				if !readyClosed {
					close(r.ready)
					readyClosed = true
				}
			case "data":
				r.mu.Lock()
				ch := r.eventLocked(strings.Join(data, "\n"))
				select {
				case <-ch:
				default:
					close(ch)
				}
				r.mu.Unlock()
			}
			event, data = "", nil
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			v := strings.TrimPrefix(line, "data:")
			data = append(data, strings.TrimPrefix(v, " "))
		}
	}
	if ctx.Err() == nil {
		fail(resp.StatusCode, fmt.Errorf("SSE stream ended: %v", sc.Err()))
	}
}

// waitAll waits until ch(r) is closed for every reader, failing the test
// with a sample of the laggards when ctx ends first.
func waitAll(t *testing.T, ctx context.Context, what string, readers []*sseReader, ch func(*sseReader) <-chan struct{}) {
	t.Helper()
	for i, r := range readers {
		select {
		case <-ch(r):
		case <-ctx.Done():
			missing := 0
			for _, r := range readers[i:] {
				select {
				case <-ch(r):
				default:
					missing++
				}
			}
			t.Fatalf("timed out waiting for %s: %d of %d missing (reader %d: %s)", what, missing, len(readers), i, r.describe())
		}
	}
}

func waitGroup(t *testing.T, ctx context.Context, what string, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatalf("timed out waiting for %s", what)
	}
}

// waitMetric waits until the sum of metric's samples with the given labels
// equals want.
func (s *server) waitMetric(t *testing.T, ctx context.Context, c *http.Client, what, metric string, want int, labels ...string) {
	t.Helper()
	s.waitMetricCond(t, ctx, c, what, metric, want, true, labels...)
}

// waitMetricIfPresent is waitMetric for a metric that may not be exported.
func (s *server) waitMetricIfPresent(t *testing.T, ctx context.Context, c *http.Client, what, metric string, want int, labels ...string) {
	t.Helper()
	s.waitMetricCond(t, ctx, c, what, metric, want, false, labels...)
}

func (s *server) waitMetricCond(t *testing.T, ctx context.Context, c *http.Client, what, metric string, want int, required bool, labels ...string) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var got float64
	var found, scraped bool
	ok := eventually(wctx, 50*time.Millisecond, func() bool {
		m, ok := s.metrics(c)
		if !ok {
			return false
		}
		scraped = true
		got, found = sum(m, metric, labels...)
		if !found && !required {
			return true
		}
		return found && got == float64(want)
	})
	switch {
	case !scraped:
		t.Fatalf("waiting for %s: GET /metrics failed", what)
	case !found && !required:
		t.Logf("%s: %s is not exported; not checked", what, metric)
	case !ok:
		t.Fatalf("waiting for %s: %s%v = %v (found %v); want %d", what, metric, labels, got, found, want)
	default:
		t.Logf("%s: %s%v = %d", what, metric, labels, want)
	}
}

// settle is the fallback without metrics: wait until the server's thread
// count has not changed for a second (bounded), giving requests time to park.
func settle(t *testing.T, ctx context.Context, s *server) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	last, since := s.threads(), time.Now()
	eventually(sctx, 100*time.Millisecond, func() bool {
		if n := s.threads(); n != last {
			last, since = n, time.Now()
		}
		return time.Since(since) >= time.Second
	})
}
