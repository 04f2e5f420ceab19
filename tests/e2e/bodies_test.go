package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// bodiesCaddyfile runs one handler in memory with the options given (%s);
// %%d is the port.
const bodiesCaddyfile = `{
	admin off
	auto_https off
	grace_period 1s
	servers {
		timeouts {
			read_body %s
			read_header 5s
		}
	}
}

http://127.0.0.1:%%d {
	handle /health {
		respond "OK" 200
	}
	route /v1/stream/* {
		durable_streams {
			long_poll_timeout 4s
			%s
		}
	}
}
`

// procMemory reads VmHWM (peak) and VmRSS of a process, in bytes.
func procMemory(t *testing.T, pid int) (hwm, rss int64) {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		for _, f := range []struct {
			prefix string
			out    *int64
		}{{"VmHWM:", &hwm}, {"VmRSS:", &rss}} {
			if v, ok := strings.CutPrefix(line, f.prefix); ok {
				kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				if err != nil {
					t.Fatalf("bad line %q", line)
				}
				*f.out = kib << 10
			}
		}
	}
	return hwm, rss
}

// resetPeak makes VmHWM start again from VmRSS (Linux: write 5 to
// clear_refs), so the peak of one step can be read.
func resetPeak(t *testing.T, pid int) {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the peak RSS: %v", err)
	}
}

// patternBody is n bytes of a repeating pattern without a length, so the
// client sends it chunked.
type patternBody struct{ n, sent int64 }

func (p *patternBody) Read(b []byte) (int, error) {
	if p.sent >= p.n {
		return 0, io.EOF
	}
	k := int(min(int64(len(b)), p.n-p.sent))
	for i := range b[:k] {
		b[i] = 'a' + byte((p.sent+int64(i))%26)
	}
	p.sent += int64(k)
	return k, nil
}

func bodyPost(t *testing.T, c *http.Client, url string, body io.Reader, length int64) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = length // -1: chunked
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(got)
}

func bodyPut(t *testing.T, c *http.Client, url string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, nil)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT %s: %d", url, resp.StatusCode)
	}
}

// TestChunkedBodiesCostTheirSize: a 100 MB chunked append over the default
// 64 MiB limit is answered 413 (exact body) having cost the server no more
// than the limit plus a small constant, and an accepted 48 MiB chunked body
// costs its size twice at most (the body and the stored copy), not the
// doubling buffer's multiple.
func TestChunkedBodiesCostTheirSize(t *testing.T) {
	srv := startCaddyfile(t, fmt.Sprintf(bodiesCaddyfile, "1m", ""))
	c := &http.Client{Timeout: time.Minute}
	url := srv.base + "/v1/stream/big"
	bodyPut(t, c, url)

	const limit = 64 << 20
	resetPeak(t, srv.Pid())
	_, rss0 := procMemory(t, srv.Pid())
	resp, got := bodyPost(t, c, url, &patternBody{n: 100_000_000}, -1)
	hwm, _ := procMemory(t, srv.Pid())
	if resp.StatusCode != http.StatusRequestEntityTooLarge ||
		got != "request body exceeds the server's append size limit (67108864 bytes)\n" {
		t.Fatalf("100 MB chunked POST: %d %q; want 413 and the limit", resp.StatusCode, got)
	}
	if grew := hwm - rss0; grew > limit+24<<20 {
		t.Errorf("a refused 100 MB chunked body raised peak RSS by %d MiB; want at most the 64 MiB limit + 24 MiB", grew>>20)
	}
	t.Logf("refused 100 MB chunked body: peak RSS +%d MiB", (hwm-rss0)>>20)

	const size = 48 << 20
	resetPeak(t, srv.Pid())
	_, rss0 = procMemory(t, srv.Pid())
	resp, got = bodyPost(t, c, url, &patternBody{n: size}, -1)
	hwm, _ = procMemory(t, srv.Pid())
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("48 MiB chunked POST: %d %q; want 204", resp.StatusCode, got)
	}
	if grew := hwm - rss0; grew > 2*size+8<<20 {
		t.Errorf("an accepted 48 MiB chunked body raised peak RSS by %d MiB; want at most twice its size + 8 MiB", grew>>20)
	}
	t.Logf("accepted 48 MiB chunked body: peak RSS +%d MiB", (hwm-rss0)>>20)
}

// TestBodyBudgetSheds: with max_inflight_body_bytes full, a new append is
// answered 503 with Retry-After and a one-line reason; once the body holding
// the budget is done, appends are accepted again.
func TestBodyBudgetSheds(t *testing.T) {
	srv := startCaddyfile(t, fmt.Sprintf(bodiesCaddyfile, "1m", "max_append_size 8MiB\n\t\t\tmax_inflight_body_bytes 8MiB"))
	c := &http.Client{Timeout: time.Minute}
	url := srv.base + "/v1/stream/budget"
	bodyPut(t, c, url)

	// A chunked body that sends 6 MiB and then waits.
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	wg.Add(1)
	var slowStatus int
	go func() {
		defer wg.Done()
		resp, _ := bodyPost(t, c, url, pr, -1)
		slowStatus = resp.StatusCode
	}()
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = 'x'
	}
	for range 6 {
		if _, err := pw.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}

	// A 4 MiB append with a length no longer fits once the server has read
	// those 6 MiB.
	probe := strings.Repeat("y", 4<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var last *http.Response
	var lastBody string
	if !eventually(ctx, 20*time.Millisecond, func() bool {
		last, lastBody = bodyPost(t, c, url, strings.NewReader(probe), int64(len(probe)))
		return last.StatusCode == http.StatusServiceUnavailable
	}) {
		t.Fatalf("a 4 MiB append while 6 of 8 MiB are in flight: %d %q; want 503", last.StatusCode, lastBody)
	}
	if lastBody != "the server is receiving too many request bodies at once; retry later\n" {
		t.Errorf("503 body %q", lastBody)
	}
	if ra := last.Header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After %q, want 1", ra)
	}

	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if slowStatus != http.StatusNoContent {
		t.Fatalf("the slow 6 MiB append: %d, want 204", slowStatus)
	}
	resp, got := bodyPost(t, c, url, strings.NewReader(probe), int64(len(probe)))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("a 4 MiB append once the budget is free: %d %q, want 204", resp.StatusCode, got)
	}
}

// TestSlowBodyIsCut: with read_body set (as the shipped configs do), a body
// trickling in is cut off when the timeout passes, while a long-poll that
// waits longer than read_body is still answered normally.
func TestSlowBodyIsCut(t *testing.T) {
	srv := startCaddyfile(t, fmt.Sprintf(bodiesCaddyfile, "2s", ""))
	c := &http.Client{Timeout: time.Minute}
	url := srv.base + "/v1/stream/slow"
	bodyPut(t, c, url)

	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/stream/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n")
	start := time.Now()
	cut := false
	for i := 0; i < 200; i++ { // 10 bytes a second for at most 20 s
		if _, err := conn.Write([]byte("0123456789")); err != nil {
			cut = true
			break
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		var b [512]byte
		n, err := conn.Read(b[:])
		if n > 0 || (err != nil && !isTimeout(err)) {
			cut = true
			break
		}
	}
	elapsed := time.Since(start)
	if !cut || elapsed > 10*time.Second {
		t.Fatalf("a 10 B/s body was not cut within 10s of a 2s read_body (cut=%v after %v)", cut, elapsed)
	}
	resp, got := bodyPost(t, c, url, strings.NewReader("ok"), 2)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("append after the cut: %d %q", resp.StatusCode, got)
	}

	// A long-poll (4 s) outlives read_body (2 s) and still gets its answer.
	t0 := time.Now()
	lp, err := c.Get(url + "?offset=now&live=long-poll")
	if err != nil {
		t.Fatalf("long-poll: %v", err)
	}
	io.Copy(io.Discard, lp.Body)
	lp.Body.Close()
	if lp.StatusCode != http.StatusNoContent || time.Since(t0) < 3*time.Second {
		t.Fatalf("long-poll: %d after %v; want 204 after the 4s timeout", lp.StatusCode, time.Since(t0))
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestLocationFollowsToTheStream: Location percent-encodes the stream path,
// so following it reaches the stream that was created, whatever its name.
func TestLocationFollowsToTheStream(t *testing.T) {
	srv := startCaddyfile(t, fmt.Sprintf(bodiesCaddyfile, "1m", ""))
	c := &http.Client{Timeout: 10 * time.Second}
	for i, tc := range []struct{ raw, location string }{
		{"q%3Fx", "q%3Fx"},
		{"h%23frag", "h%23frag"},
		{"pct%2541", "pct%2541"},
		{"sp%20ace", "sp%20ace"},
		{"crlf%0D%0AX-Injected:%201", "crlf%0D%0AX-Injected:%201"},
		{"caf%C3%A9", "caf%C3%A9"},
		{"plain-name_1.2~", "plain-name_1.2~"},
	} {
		url := srv.base + "/v1/stream/loc/" + tc.raw
		body := fmt.Sprintf("stream %d", i)
		req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "text/plain")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("PUT %s: %v", url, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT %s: %d", url, resp.StatusCode)
		}
		want := srv.base + "/v1/stream/loc/" + tc.location
		loc := resp.Header.Get("Location")
		if loc != want {
			t.Errorf("PUT %s: Location %q, want %q", tc.raw, loc, want)
		}
		if resp.Header.Get("X-Injected") != "" {
			t.Errorf("PUT %s: a header was injected", tc.raw)
		}
		get, err := c.Get(loc + "?offset=-1")
		if err != nil {
			t.Errorf("GET Location %q: %v", loc, err)
			continue
		}
		got, _ := io.ReadAll(get.Body)
		get.Body.Close()
		if get.StatusCode != http.StatusOK || string(got) != body {
			t.Errorf("GET Location %q: %d %q, want 200 %q", loc, get.StatusCode, got, body)
		}
	}
}

// TestLargeJSONBodyLeavesNothingBehind: validating a large JSON append
// leaves no parser capacity behind on the engine thread (simdjson's reused
// parser kept the tape and strings of the largest document it had seen).
func TestLargeJSONBodyLeavesNothingBehind(t *testing.T) {
	dir := t.TempDir()
	srv := startCaddyfile(t, fmt.Sprintf(bodiesCaddyfile, "1m", "data_dir "+dir))
	c := &http.Client{Timeout: time.Minute}
	url := srv.base + "/v1/stream/json"
	req, _ := http.NewRequest(http.MethodPut, url, nil)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}

	// 8 Mi one-digit elements: 16 MiB of text, a large tape.
	var b strings.Builder
	b.Grow(16<<20 + 2)
	b.WriteByte('[')
	for i := range 8 << 20 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('1')
	}
	b.WriteByte(']')
	body := b.String()
	_, rss0 := procMemory(t, srv.Pid())
	req, _ = http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST 16 MiB JSON: %d %q", resp.StatusCode, got)
	}
	// The stored bytes are on disk, not in the process: what stays
	// resident is what the append left behind.
	_, rss1 := procMemory(t, srv.Pid())
	if left := rss1 - rss0; left > 48<<20 {
		t.Errorf("a 16 MiB JSON append left %d MiB resident; want at most 48 MiB", left>>20)
	}
	t.Logf("a 16 MiB JSON append left %d MiB resident", (rss1-rss0)>>20)
}

// TestOverLimitBodyWithLengthIs413: a body whose Content-Length is over the
// limit is answered 413 without being read, and the client, still sending,
// gets that answer.
func TestOverLimitBodyWithLengthIs413(t *testing.T) {
	srv := startCaddyfile(t, fmt.Sprintf(bodiesCaddyfile, "1m", "max_append_size 1MiB"))
	c := &http.Client{Timeout: time.Minute}
	url := srv.base + "/v1/stream/len"
	bodyPut(t, c, url)
	body := &patternBody{n: 100_000_000}
	resp, got := bodyPost(t, c, url, body, body.n)
	if resp.StatusCode != http.StatusRequestEntityTooLarge ||
		got != "request body exceeds the server's append size limit (1048576 bytes)\n" {
		t.Fatalf("POST with Content-Length 100 MB: %d %q; want 413 and the limit", resp.StatusCode, got)
	}
	if body.sent >= body.n {
		t.Errorf("the client sent the whole 100 MB before getting its 413")
	}
}
