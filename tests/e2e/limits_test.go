package e2e

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// limitsCaddyfile has %s for the durable_streams options.
const limitsCaddyfile = `{
	admin off
	auto_https off
	grace_period 1s
	metrics
}

http://127.0.0.1:%%d {
	handle /health {
		respond "OK" 200
	}
	handle /metrics {
		metrics
	}
	route /v1/stream/* {
		durable_streams {
			long_poll_timeout 2s
			%s
		}
	}
}
`

func limitsDo(t *testing.T, c *http.Client, method, url string, hdr map[string]string, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// A burst from one client: the bucket's burst plus what refills is served,
// the rest gets 429 with Retry-After and a reason; another group's rate and
// the metrics agree.
func TestRateLimitBurst(t *testing.T) {
	srv := startCaddyfile(t, fmt.Sprintf(limitsCaddyfile, `rate_limit {
				per_client 20/s burst 40
				max_live_sessions_per_client 2
			}`))
	c := &http.Client{Timeout: 10 * time.Second}
	url := srv.base + "/v1/stream/burst/s"
	if resp, _ := limitsDo(t, c, "PUT", url, map[string]string{"Content-Type": "text/plain"}, ""); resp.StatusCode != 201 {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	const total = 400
	var served, refused atomic.Int64
	var badRefusal atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range total / 8 {
				resp, body := limitsDo(t, c, "POST", url, map[string]string{"Content-Type": "text/plain"}, fmt.Sprintf("%d-%d\n", w, i))
				switch resp.StatusCode {
				case 204:
					served.Add(1)
				case 429:
					refused.Add(1)
					if ra := resp.Header.Get("Retry-After"); ra != "1" || body != "too many requests from this client address\n" {
						badRefusal.Store(fmt.Sprintf("Retry-After %q body %q", ra, body))
					}
				default:
					badRefusal.Store(fmt.Sprintf("status %d %q", resp.StatusCode, body))
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if v := badRefusal.Load(); v != nil {
		t.Fatal(v)
	}
	// The PUT took one token too.
	maxServed := int64(40 + 20*elapsed.Seconds() + 1)
	t.Logf("burst of %d appends in %v: %d served, %d refused (429)", total, elapsed.Round(time.Millisecond), served.Load(), refused.Load())
	if served.Load()+refused.Load() != total || refused.Load() == 0 || served.Load() < 39 || served.Load() > maxServed {
		t.Fatalf("served %d refused %d; want %d in all, at least 39 and at most %d served", served.Load(), refused.Load(), total, maxServed)
	}
	// Exactly the served appends are in the stream.
	time.Sleep(1100 * time.Millisecond) // let a token refill for the read
	resp, body := limitsDo(t, c, "GET", url+"?offset=-1", nil, "")
	if resp.StatusCode != 200 || int64(strings.Count(body, "\n")) != served.Load() {
		t.Fatalf("read: %d, %d lines; want %d", resp.StatusCode, strings.Count(body, "\n"), served.Load())
	}
	m, ok := srv.metrics(c)
	if !ok {
		t.Fatal("no metrics")
	}
	if got, _ := sum(m, "caddy_durable_streams_rejections_total", `reason="rate_client"`); int64(got) != refused.Load() {
		t.Fatalf("rejections_total{reason=rate_client} = %v, want %d", got, refused.Load())
	}

	// Live reads: two per client at once, the third is refused.
	time.Sleep(2 * time.Second)
	live := url + "?offset=now&live=long-poll"
	var lwg sync.WaitGroup
	for range 2 {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			limitsDo(t, c, "GET", live, nil, "")
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, _ := srv.metrics(c)
		if n, _ := sum(m, "caddy_durable_streams_live_sessions", `mode="long_poll"`); n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the two long-polls did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, body = limitsDo(t, c, "GET", live, nil, "")
	if resp.StatusCode != 429 || body != "too many live reads open from this client address\n" {
		t.Fatalf("third live read: %d %q", resp.StatusCode, body)
	}
	lwg.Wait()
}

// mintHS256 makes a token for the e2e server's secret.
func mintHS256(secret string, claims map[string]any) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]any{"alg": "HS256", "typ": "JWT"})
	c, _ := json.Marshal(claims)
	signed := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(m.Sum(nil))
}

// A browser-style read with a query token works (and is private to the
// cache), an append outside the token's scope is 403, no token is 401.
func TestStreamScopedTokens(t *testing.T) {
	const secret = "e2e-secret-0123456789-0123456789-abcdef"
	srv := startCaddyfile(t, fmt.Sprintf(limitsCaddyfile, `tokens {
				audience streams.e2e
				hmac_secret {env.DS_E2E_SECRET}
			}`), "DS_E2E_SECRET="+secret)
	c := &http.Client{Timeout: 10 * time.Second}
	exp := time.Now().Add(time.Hour).Unix()
	writer := mintHS256(secret, map[string]any{"aud": "streams.e2e", "exp": exp,
		"ds": map[string]any{"create": []string{"chat/42/*"}, "append": []string{"chat/42/inbox"}, "read": []string{"chat/42/*"}}})
	reader := mintHS256(secret, map[string]any{"aud": "streams.e2e", "exp": exp,
		"ds": map[string]any{"read": []string{"chat/42/*"}}})
	base := srv.base + "/v1/stream/chat/42/"
	text := map[string]string{"Content-Type": "text/plain"}
	bearer := func(tok string) map[string]string {
		return map[string]string{"Content-Type": "text/plain", "Authorization": "Bearer " + tok}
	}

	resp, body := limitsDo(t, c, "PUT", base+"inbox", text, "")
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="durable-streams"` || body != "a bearer token is required\n" {
		t.Fatalf("PUT without token: %d %q %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
	if resp, body := limitsDo(t, c, "PUT", base+"inbox", bearer(writer), ""); resp.StatusCode != 201 {
		t.Fatalf("PUT with token: %d %q", resp.StatusCode, body)
	}
	if resp, body := limitsDo(t, c, "POST", base+"inbox", bearer(writer), "hello\n"); resp.StatusCode != 204 {
		t.Fatalf("POST in scope: %d %q", resp.StatusCode, body)
	}
	if resp, body := limitsDo(t, c, "PUT", base+"outbox", bearer(writer), ""); resp.StatusCode != 201 {
		t.Fatalf("PUT outbox: %d %q", resp.StatusCode, body)
	}
	resp, body = limitsDo(t, c, "POST", base+"outbox", bearer(writer), "nope\n")
	if resp.StatusCode != 403 || body != "token does not allow appending to this stream\n" {
		t.Fatalf("POST outside scope: %d %q", resp.StatusCode, body)
	}
	resp, body = limitsDo(t, c, "POST", base+"inbox", bearer(reader), "nope\n")
	if resp.StatusCode != 403 {
		t.Fatalf("POST with a read-only token: %d %q", resp.StatusCode, body)
	}
	resp, body = limitsDo(t, c, "GET", base+"inbox?offset=-1", map[string]string{"Authorization": "Bearer " + reader + "x"}, "")
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("GET with a bad signature: %d %q %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}

	resp, body = limitsDo(t, c, "GET", base+"inbox?offset=-1", map[string]string{"Authorization": "Bearer " + reader}, "")
	if cc := resp.Header.Get("Cache-Control"); resp.StatusCode != 200 || body != "hello\n" || !strings.HasPrefix(cc, "private") || strings.Contains(cc, "public") {
		t.Fatalf("GET with a header token: %d %q Cache-Control %q; want 200, private", resp.StatusCode, body, cc)
	}

	// EventSource-style: the token in the query.
	resp, body = limitsDo(t, c, "GET", base+"inbox?offset=-1&token="+reader, nil, "")
	if resp.StatusCode != 200 || body != "hello\n" {
		t.Fatalf("GET with a query token: %d %q", resp.StatusCode, body)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.HasPrefix(cc, "private") || strings.Contains(cc, "public") {
		t.Fatalf("query-token read Cache-Control %q; want private", cc)
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			if strings.Contains(v, reader) {
				t.Fatalf("header %s echoes the token", k)
			}
		}
	}
	// SSE with a query token: the first event carries the data.
	req, _ := http.NewRequest("GET", base+"inbox?offset=-1&live=sse&token="+reader, nil)
	sse, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer sse.Body.Close()
	if sse.StatusCode != 200 {
		t.Fatalf("SSE with a query token: %d", sse.StatusCode)
	}
	sc := bufio.NewScanner(sse.Body)
	gotData := false
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, reader) {
			t.Fatal("SSE body echoes the token")
		}
		if line == "data:hello" || line == "data: hello" {
			gotData = true
			break
		}
	}
	if !gotData {
		t.Fatal("SSE with a query token did not deliver the data")
	}
	resp, _ = limitsDo(t, c, "GET", base+"inbox?offset=-1&token="+writer[:20], nil, "")
	if resp.StatusCode != 401 {
		t.Fatalf("GET with a malformed query token: %d", resp.StatusCode)
	}
	m, ok := srv.metrics(c)
	if !ok {
		t.Fatal("no metrics")
	}
	for reason, want := range map[string]float64{"token_missing": 1, "token_invalid": 2, "token_scope": 2} {
		if got, _ := sum(m, "caddy_durable_streams_rejections_total", `reason="`+reason+`"`); got != want {
			t.Errorf("rejections_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}
