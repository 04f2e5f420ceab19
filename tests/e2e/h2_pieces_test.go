package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durable-streams-server/durable-streams-server/tests/internal/dsserver"
)

// SSE over TLS + HTTP/2 under Caddy's write idle timeout (README,
// "Performance"): each piece is written under one idle-deadline window
// (caddymodule/idle_piece.go). The pieces arrive byte for byte as over
// HTTP/1.1, a stream that waits longer than the idle timeout between pieces
// is not reset, and a client that stops reading is still cut after it.

const h2PiecesCaddyfile = `{
	admin off
	skip_install_trust
	auto_https disable_redirects
	grace_period 1s
	servers {
		protocols h1 h2
		timeouts {
			write_idle 1s
		}
	}
}

https://127.0.0.1:%d {
	tls internal
	handle /health {
		respond "OK" 200
	}
	handle /metrics {
		metrics
	}
	route /v1/stream/* {
		durable_streams {
			sse_reconnect_interval 10m
		}
	}
}
`

// h2Server starts a server on caddyfile, a template of a Caddyfile for TLS
// with Caddy's internal CA whose %d is the port, and waits for its /health.
func h2Server(t *testing.T, caddyfile string) *server {
	t.Helper()
	port := freePort(t)
	p := dsserver.Start(t, binary(t), nil, dsserver.RunArgs(dsserver.WriteCaddyfile(t, fmt.Sprintf(caddyfile, port)))...)
	s := &server{Process: p, t: t, base: fmt.Sprintf("https://127.0.0.1:%d", port)}
	c := &http.Client{Timeout: time.Second, Transport: h2Transport(nil)}
	s.WaitOK(c, s.base+"/health", 30*time.Second)
	return s
}

// h2Transport is a TLS client transport that offers HTTP/2, with conf's
// HTTP/2 settings (nil: the defaults). Caddy's internal CA is not trusted
// here.
func h2Transport(conf *http.HTTP2Config) *http.Transport {
	return &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
		HTTP2:             conf,
	}
}

// stalledH2Client is an HTTP/2 client that takes at most 16 KiB of a
// response unread: a server writing more to it blocks on flow control.
func stalledH2Client() *http.Client {
	return &http.Client{Transport: h2Transport(&http.HTTP2Config{MaxReceiveBufferPerStream: 16 << 10})}
}

// rawBody collects an SSE response's bytes as they arrive.
type rawBody struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	err   error
	proto string
	grew  chan struct{} // signalled (not closed) after every read
}

func (b *rawBody) run(ctx context.Context, c *http.Client, url string) {
	fail := func(err error) {
		b.mu.Lock()
		b.err = err
		b.mu.Unlock()
		select {
		case b.grew <- struct{}{}:
		default:
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		fail(err)
		return
	}
	defer resp.Body.Close()
	b.mu.Lock()
	b.proto = resp.Proto
	b.mu.Unlock()
	if resp.StatusCode != http.StatusOK {
		fail(fmt.Errorf("status %d", resp.StatusCode))
		return
	}
	p := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(p)
		b.mu.Lock()
		b.buf.Write(p[:n])
		b.mu.Unlock()
		select {
		case b.grew <- struct{}{}:
		default:
		}
		if err != nil {
			fail(err)
			return
		}
	}
}

// waitFor waits until the body holds want, failing on a read error or
// when ctx ends.
func (b *rawBody) waitFor(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	for {
		b.mu.Lock()
		has, err := strings.Contains(b.buf.String(), want), b.err
		b.mu.Unlock()
		switch {
		case has:
			return
		case err != nil:
			t.Fatalf("waiting for %.40q: the response ended: %v", want, err)
		}
		select {
		case <-b.grew:
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("waiting for %.40q: timed out", want)
		}
	}
}

func (b *rawBody) bytes() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestSSEOverHTTP2Pieces(t *testing.T) {
	binary(t)
	srv := h2Server(t, h2PiecesCaddyfile)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ctl := &http.Client{Timeout: 10 * time.Second, Transport: h2Transport(nil)}
	defer ctl.CloseIdleConnections()

	t.Run("byte-exact pieces, idle between them", func(t *testing.T) {
		stream := srv.base + "/v1/stream/h2pieces"
		tail := put(t, ctl, stream)
		url := stream + "?offset=" + tail + "&live=sse"

		// Three HTTP/2 subscribers multiplexed on one connection, and one
		// over HTTP/1.1 (TLS, so Go's ordinary Write + Flush path).
		h2 := &http.Client{Transport: h2Transport(nil)}
		h1tr := h2Transport(nil)
		h1tr.Protocols = new(http.Protocols)
		h1tr.Protocols.SetHTTP1(true)
		h1 := &http.Client{Transport: h1tr}
		defer h2.CloseIdleConnections()
		defer h1.CloseIdleConnections()
		sctx, scancel := context.WithCancel(ctx)
		defer scancel()
		readers := []*rawBody{}
		var wg sync.WaitGroup
		for i := range 4 {
			c := h2
			if i == 3 {
				c = h1
			}
			b := &rawBody{grew: make(chan struct{}, 1)}
			readers = append(readers, b)
			wg.Add(1)
			go func() { defer wg.Done(); b.run(sctx, c, url) }()
		}
		for _, b := range readers {
			b.waitFor(t, ctx, "event: control")
		}
		srv.waitMetric(t, ctx, ctl, "four live SSE responses", metricLive, 4, `mode="sse"`)

		// Sizes around HTTP/2's 4 KiB handler buffer, its 16 KiB frames
		// and Caddy's 64 KiB write chunk.
		pieces := []string{"a", strings.Repeat("b", 4095), "one\ntwo", strings.Repeat("0123456789", 1700), strings.Repeat("xyz", 30000)}
		for i, p := range pieces {
			if i == 2 {
				// Longer than write_idle (1 s) with no piece: an idle
				// deadline left armed between pieces would reset the
				// HTTP/2 streams (a timer there, caddy #8118). The wait is
				// the point of the check, so it cannot be a condition.
				time.Sleep(2500 * time.Millisecond)
			}
			post(t, ctl, stream, p)
			last := p[strings.LastIndexByte(p, '\n')+1:]
			for _, b := range readers {
				b.waitFor(t, ctx, "data:"+last+"\n")
			}
		}
		want := readers[3].bytes()
		for _, p := range pieces {
			for _, line := range strings.Split(p, "\n") {
				if !strings.Contains(want, "\ndata:"+line+"\n") {
					t.Fatalf("HTTP/1.1 body lacks the data line of %.20q", p)
				}
			}
		}
		for i, b := range readers[:3] {
			if b.proto != "HTTP/2.0" {
				t.Fatalf("reader %d: %s, want HTTP/2.0", i, b.proto)
			}
			if got := b.bytes(); got != want {
				t.Errorf("reader %d over HTTP/2: %d bytes differ from HTTP/1.1's %d", i, len(got), len(want))
			}
		}
		if readers[3].proto != "HTTP/1.1" {
			t.Fatalf("reader 3: %s, want HTTP/1.1", readers[3].proto)
		}
		srv.waitMetric(t, ctx, ctl, "all four still live", metricLive, 4, `mode="sse"`)
		scancel()
		wg.Wait()
		srv.waitMetric(t, ctx, ctl, "readers gone", metricLive, 0, `mode="sse"`)
	})

	t.Run("a stalled client is cut by write_idle", func(t *testing.T) {
		stream := srv.base + "/v1/stream/h2stall"
		tail := put(t, ctl, stream)
		url := stream + "?offset=" + tail + "&live=sse"

		stalled := stalledH2Client()
		defer stalled.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := stalled.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("%s, want HTTP/2", resp.Proto)
		}
		srv.waitMetric(t, ctx, ctl, "the stalled client live", metricLive, 1, `mode="sse"`)

		// 512 KiB while it reads nothing: the piece's write blocks on flow
		// control and the write idle timeout must end the response.
		post(t, ctl, stream, strings.Repeat("s", 512<<10))
		cut, cancelCut := context.WithTimeout(ctx, 20*time.Second)
		defer cancelCut()
		srv.waitMetric(t, cut, ctl, "the stalled response ended", metricLive, 0, `mode="sse"`)
		got, err := io.ReadAll(resp.Body)
		if err == nil || !strings.Contains(err.Error(), "INTERNAL_ERROR") {
			t.Errorf("reading the stalled response after the cut: %v; want the stream reset (INTERNAL_ERROR)", err)
		}
		if len(got) >= 512<<10 {
			t.Errorf("the stalled client got %d bytes; want the cut before the whole piece", len(got))
		}
	})

	t.Run("a long-poll answer to a stalled client is cut by write_idle", func(t *testing.T) {
		stream := srv.base + "/v1/stream/h2stall-lp"
		tail := put(t, ctl, stream)
		url := stream + "?offset=" + tail + "&live=long-poll"

		stalled := stalledH2Client()
		defer stalled.CloseIdleConnections()
		type answer struct {
			resp *http.Response
			err  error
		}
		answered := make(chan answer, 1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := stalled.Do(req)
			answered <- answer{resp, err}
		}()
		srv.waitMetric(t, ctx, ctl, "the long-poll parked", metricLive, 1, `mode="long_poll"`)
		// The answer (512 KiB) blocks on flow control: the write idle
		// timeout must end it.
		post(t, ctl, stream, strings.Repeat("l", 512<<10))
		var a answer
		select {
		case a = <-answered:
		case <-ctx.Done():
			t.Fatal("no answer to the long-poll")
		}
		if a.err != nil {
			t.Fatal(a.err)
		}
		defer a.resp.Body.Close()
		if a.resp.ProtoMajor != 2 || a.resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %d, want HTTP/2 200", a.resp.Proto, a.resp.StatusCode)
		}
		cut, cancelCut := context.WithTimeout(ctx, 20*time.Second)
		defer cancelCut()
		srv.waitMetric(t, cut, ctl, "the stalled answer ended", metricLive, 0, `mode="long_poll"`)
		got, err := io.ReadAll(a.resp.Body)
		if err == nil || !strings.Contains(err.Error(), "INTERNAL_ERROR") {
			t.Errorf("reading the stalled answer after the cut: %v; want the stream reset (INTERNAL_ERROR)", err)
		}
		if len(got) >= 512<<10 {
			t.Errorf("the stalled client got %d bytes; want the cut before the whole answer", len(got))
		}

		// Clients that read get the same answer over HTTP/2 and HTTP/1.1.
		tail = post(t, ctl, stream, "x")
		url = stream + "?offset=" + tail + "&live=long-poll"
		type body struct {
			proto, text string
			err         error
		}
		bodies := make(chan body, 2)
		for _, h1only := range []bool{false, true} {
			tr := h2Transport(nil)
			if h1only {
				tr.Protocols = new(http.Protocols)
				tr.Protocols.SetHTTP1(true)
			}
			c := &http.Client{Timeout: 30 * time.Second, Transport: tr}
			defer c.CloseIdleConnections()
			go func() {
				resp, err := c.Get(url)
				if err != nil {
					bodies <- body{err: err}
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
				bodies <- body{resp.Proto, string(b), err}
			}()
		}
		srv.waitMetric(t, ctx, ctl, "both long-polls parked", metricLive, 2, `mode="long_poll"`)
		want := strings.Repeat("0123456789abcdef", 5000) // over 64 KiB: Caddy's write chunk
		post(t, ctl, stream, want)
		protos := map[string]bool{}
		for range 2 {
			b := <-bodies
			if b.err != nil || b.text != want {
				t.Fatalf("long-poll answer over %s: %d bytes, %v; want the %d appended", b.proto, len(b.text), b.err, len(want))
			}
			protos[b.proto] = true
		}
		if !protos["HTTP/2.0"] || !protos["HTTP/1.1"] {
			t.Fatalf("answers over %v; want HTTP/2.0 and HTTP/1.1", protos)
		}
	})
}
