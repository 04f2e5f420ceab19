package cache

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestVarnish runs every case against one server + Varnish pair.
func TestVarnish(t *testing.T) {
	tp := startTopology(t)
	client := &http.Client{Timeout: 10 * time.Second}

	// A catch-up read is stored once and answered from the cache after:
	// the second answer is a hit with the same bytes and no origin request.
	t.Run("CatchUpCached", func(t *testing.T) {
		tp.createStream(t, "/v1/stream/catchup", "hello, cached world")
		url := tp.cache + "/v1/stream/catchup?offset=-1"
		before := tp.backendReqs(t)
		first := do(t, client, "GET", url, nil, "")
		second := do(t, client, "GET", url, nil, "")
		want(t, "first status", first.status, 200)
		want(t, "second status", second.status, 200)
		want(t, "first body", first.body, "hello, cached world")
		want(t, "second body", second.body, first.body)
		want(t, "second ETag", second.header.Get("ETag"), first.header.Get("ETag"))
		want(t, "first X-Varnish ids (miss)", xvarnishIDs(first.header), 1)
		want(t, "second X-Varnish ids (hit)", xvarnishIDs(second.header), 2)
		want(t, "second Cache-Control", second.header.Get("Cache-Control"), "public, max-age=60, stale-while-revalidate=300")
		want(t, "origin requests for two reads", tp.backendReqs(t)-before, int64(1))
		// Query parameters in another order are the same object (std.querysort).
		third := do(t, client, "GET", tp.cache+"/v1/stream/catchup?offset=-1&a=1", nil, "")
		fourth := do(t, client, "GET", tp.cache+"/v1/stream/catchup?a=1&offset=-1", nil, "")
		want(t, "reordered query X-Varnish ids (hit)", xvarnishIDs(fourth.header), 2)
		want(t, "reordered query body", fourth.body, third.body)
		// If-None-Match on the cached ETag: 304 from the cache.
		inm := do(t, client, "GET", url, map[string]string{"If-None-Match": first.header.Get("ETag")}, "")
		want(t, "If-None-Match status", inm.status, 304)
		want(t, "origin requests after all reads", tp.backendReqs(t)-before, int64(2))
	})

	// Credentials are part of the key: another Authorization is a miss.
	t.Run("CredentialsKeyed", func(t *testing.T) {
		tp.createStream(t, "/v1/stream/creds", "secret")
		url := tp.cache + "/v1/stream/creds?offset=-1"
		a1 := do(t, client, "GET", url, map[string]string{"Authorization": "Bearer a"}, "")
		a2 := do(t, client, "GET", url, map[string]string{"Authorization": "Bearer a"}, "")
		b := do(t, client, "GET", url, map[string]string{"Authorization": "Bearer b"}, "")
		none := do(t, client, "GET", url, nil, "")
		want(t, "token a first X-Varnish ids", xvarnishIDs(a1.header), 1)
		want(t, "token a again X-Varnish ids (hit)", xvarnishIDs(a2.header), 2)
		want(t, "token b X-Varnish ids (miss, not a's object)", xvarnishIDs(b.header), 1)
		want(t, "no token X-Varnish ids (miss, not a's object)", xvarnishIDs(none.header), 1)
	})

	// HEAD is metadata (no-store): passed, so it sees every append.
	t.Run("HeadPassed", func(t *testing.T) {
		tp.createStream(t, "/v1/stream/head", "one")
		url := tp.cache + "/v1/stream/head"
		h1 := do(t, client, "HEAD", url, nil, "")
		tail := tp.appendOrigin(t, "/v1/stream/head", "two")
		h2 := do(t, client, "HEAD", url, nil, "")
		want(t, "HEAD status", h2.status, 200)
		want(t, "HEAD Stream-Next-Offset after append", h2.header.Get("Stream-Next-Offset"), tail)
		if h1.header.Get("Stream-Next-Offset") == tail {
			t.Fatalf("HEAD before the append already had the new tail %s", tail)
		}
		want(t, "HEAD Cache-Control", h2.header.Get("Cache-Control"), "no-store")
	})

	// Writes are passed, never stored: two identical POSTs both append.
	t.Run("PostNeverCached", func(t *testing.T) {
		tp.createStream(t, "/v1/stream/writes", "")
		hdr := map[string]string{"Content-Type": "text/plain"}
		before := tp.backendReqs(t)
		p1 := do(t, client, "POST", tp.cache+"/v1/stream/writes", hdr, "x")
		p2 := do(t, client, "POST", tp.cache+"/v1/stream/writes", hdr, "x")
		want(t, "first POST status", p1.status, 204)
		want(t, "second POST status", p2.status, 204)
		want(t, "second POST X-Varnish ids", xvarnishIDs(p2.header), 1)
		want(t, "origin requests for two POSTs", tp.backendReqs(t)-before, int64(2))
		r := do(t, client, "GET", tp.origin+"/v1/stream/writes?offset=-1", nil, "")
		want(t, "stream after two POSTs through the cache", r.body, "xx")
	})

	// A path deleted and created again is not answered with the old bytes.
	t.Run("RecreateDropsCachedReads", func(t *testing.T) {
		tp.createStream(t, "/v1/stream/again", "old bytes")
		url := tp.cache + "/v1/stream/again?offset=-1"
		want(t, "first read", do(t, client, "GET", url, nil, "").body, "old bytes")
		want(t, "DELETE through the cache", do(t, client, "DELETE", tp.cache+"/v1/stream/again", nil, "").status, 204)
		want(t, "PUT through the cache", do(t, client, "PUT", tp.cache+"/v1/stream/again", map[string]string{"Content-Type": "text/plain"}, "").status, 201)
		tp.appendOrigin(t, "/v1/stream/again", "new bytes")
		want(t, "read after re-create", do(t, client, "GET", url, nil, "").body, "new bytes")
	})

	// N readers long-polling the same (stream, offset, cursor) cost the
	// origin one request per round: two rounds that an append answers, then
	// one that times out (204), each collapsed onto a single origin request.
	t.Run("LongPollCollapsed", func(t *testing.T) {
		const readers = 40
		tp.createStream(t, "/v1/stream/hot", "")
		offset := do(t, client, "GET", tp.origin+"/v1/stream/hot?offset=-1", nil, "").header.Get("Stream-Next-Offset")
		cursor := ""
		transport := &http.Transport{MaxIdleConnsPerHost: readers, MaxConnsPerHost: 0}
		defer transport.CloseIdleConnections()
		readerClient := &http.Client{Transport: transport, Timeout: 20 * time.Second}
		for round, body := range []string{"first", "second", ""} {
			url := tp.cache + "/v1/stream/hot?offset=" + offset + "&live=long-poll"
			if cursor != "" {
				url += "&cursor=" + cursor
			}
			before := tp.backendReqs(t)
			sleepsBefore := tp.stat(t, "MAIN.busy_sleep")
			replies := make([]reply, readers)
			errs := make([]error, readers)
			var wg sync.WaitGroup
			for i := range readers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := readerClient.Get(url)
					if err != nil {
						errs[i] = err
						return
					}
					defer resp.Body.Close()
					var sb strings.Builder
					_, err = bufio.NewReader(resp.Body).WriteTo(&sb)
					errs[i] = err
					replies[i] = reply{resp.StatusCode, resp.Header, sb.String()}
				}()
			}
			// Wait until one request is at the origin and the others wait
			// behind it in Varnish's waiting list.
			deadline := time.Now().Add(10 * time.Second)
			// (MAIN.backend_req counts a fetch when it ends; a request on
			// the waiting list means the busy object's fetch is under way.)
			for tp.stat(t, "MAIN.busy_sleep")-sleepsBefore < readers-1 {
				if time.Now().After(deadline) {
					t.Fatalf("round %d: readers not parked: %d origin requests, %d waiting", round,
						tp.backendReqs(t)-before, tp.stat(t, "MAIN.busy_sleep")-sleepsBefore)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if body != "" {
				tp.appendOrigin(t, "/v1/stream/hot", body)
			}
			wg.Wait()
			for i := range readers {
				if errs[i] != nil {
					t.Fatalf("round %d reader %d: %v", round, i, errs[i])
				}
			}
			wantStatus := 200
			if body == "" {
				wantStatus = 204
			}
			next := replies[0].header.Get("Stream-Cursor")
			if next == "" || next == cursor {
				t.Fatalf("round %d: Stream-Cursor %q does not move past %q", round, next, cursor)
			}
			for i, r := range replies {
				want(t, fmt.Sprintf("round %d reader %d status", round, i), r.status, wantStatus)
				want(t, fmt.Sprintf("round %d reader %d body", round, i), r.body, body)
				want(t, fmt.Sprintf("round %d reader %d Stream-Cursor", round, i), r.header.Get("Stream-Cursor"), next)
				want(t, fmt.Sprintf("round %d reader %d Stream-Next-Offset", round, i), r.header.Get("Stream-Next-Offset"), replies[0].header.Get("Stream-Next-Offset"))
			}
			for tp.backendReqs(t)-before < 1 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			want(t, fmt.Sprintf("round %d: origin requests for %d readers", round, readers), tp.backendReqs(t)-before, int64(1))
			offset = replies[0].header.Get("Stream-Next-Offset")
			cursor = next
		}
	})

	// SSE is passed and streamed: an append reaches the reader at once, and
	// the server's reconnect interval ends the response through the cache.
	t.Run("SSEPassedLive", func(t *testing.T) {
		tp.createStream(t, "/v1/stream/sse", "")
		offset := do(t, client, "GET", tp.origin+"/v1/stream/sse?offset=-1", nil, "").header.Get("Stream-Next-Offset")
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", tp.cache+"/v1/stream/sse?offset="+offset+"&live=sse", nil)
		opened := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		want(t, "SSE status", resp.StatusCode, 200)
		want(t, "SSE Content-Type", resp.Header.Get("Content-Type"), "text/event-stream")
		want(t, "SSE X-Varnish ids (pass)", xvarnishIDs(resp.Header), 1)
		lines := make(chan string, 64)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		await := func(what string, match func(string) bool, within time.Duration) {
			t.Helper()
			timer := time.NewTimer(within)
			defer timer.Stop()
			for {
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatalf("SSE ended before %s", what)
					}
					if match(l) {
						return
					}
				case <-timer.C:
					t.Fatalf("no %s within %v", what, within)
				}
			}
		}
		await("first control event", func(l string) bool { return strings.HasPrefix(l, "event: control") }, 2*time.Second)
		appended := time.Now()
		tp.appendOrigin(t, "/v1/stream/sse", "live event")
		// Well before the reconnect interval: a buffering cache would only
		// hand it over when the server ends the response.
		await("the appended data", func(l string) bool { return l == "data:live event" || l == "data: live event" }, time.Second)
		t.Logf("SSE delivery through Varnish: %v", time.Since(appended))
		for range lines {
		}
		ended := time.Since(opened)
		if ended < sseReconnectInterval-500*time.Millisecond || ended > sseReconnectInterval+3*time.Second {
			t.Fatalf("SSE response ended after %v; the server's reconnect interval is %v", ended, sseReconnectInterval)
		}
	})
}
