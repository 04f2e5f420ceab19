package caddymodule

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// manualClock is a clock tests move by hand.
type manualClock struct{ ns int64 }

func (c *manualClock) now() int64              { return c.ns }
func (c *manualClock) advance(d time.Duration) { c.ns += int64(d) }

func TestBucketRefillsAtItsRate(t *testing.T) {
	clk := &manualClock{}
	l := newLimiter(rate{perSecond: 2, burst: 3}, 0, clk.now)
	for i := range 3 {
		if ok, _ := l.take("a", 1); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	ok, wait := l.take("a", 1)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("4th request: ok %v wait %v; want refused, 500ms", ok, wait)
	}
	if ok, _ := l.take("b", 1); !ok {
		t.Fatal("another key shares a's bucket")
	}
	clk.advance(499 * time.Millisecond)
	if ok, _ := l.take("a", 1); ok {
		t.Fatal("let through before a token refilled")
	}
	clk.advance(time.Millisecond)
	if ok, _ := l.take("a", 1); !ok {
		t.Fatal("refused once a token refilled")
	}
	clk.advance(time.Hour) // refills to the burst, not beyond
	for range 3 {
		l.take("a", 1)
	}
	if ok, _ := l.take("a", 1); ok {
		t.Fatal("bucket refilled beyond its burst")
	}
}

// A cost above the burst passes when the bucket is full and leaves a debt.
func TestBucketLargeCostGoesIntoDebt(t *testing.T) {
	clk := &manualClock{}
	l := newLimiter(rate{perSecond: 100, burst: 100}, 0, clk.now)
	if ok, _ := l.take("a", 300); !ok {
		t.Fatal("a cost above the burst is refused with a full bucket")
	}
	ok, wait := l.take("a", 1)
	if ok || wait != 2010*time.Millisecond {
		t.Fatalf("after the debt: ok %v wait %v; want refused, 2.01s", ok, wait)
	}
	l.debit("a", 100)
	if _, wait := l.take("a", 1); wait != 3010*time.Millisecond {
		t.Fatalf("after a debit of 100: wait %v, want 3.01s", wait)
	}
}

func TestLimiterMemoryIsBounded(t *testing.T) {
	clk := &manualClock{}
	l := newLimiter(rate{perSecond: 1, burst: 1}, 160, clk.now)
	for i := range 10000 {
		l.take(fmt.Sprint("client-", i), 1)
	}
	if n := l.size(); n > 160 {
		t.Fatalf("%d keys tracked, cap 160", n)
	}
}

func TestSessionCounter(t *testing.T) {
	c := newSessionCounter(2)
	if !c.enter("a") || !c.enter("a") || c.enter("a") {
		t.Fatal("want two sessions admitted, the third refused")
	}
	if !c.enter("b") {
		t.Fatal("b refused for a's sessions")
	}
	c.leave("a")
	if !c.enter("a") {
		t.Fatal("refused after one left")
	}
	c.leave("a")
	c.leave("a")
	c.leave("b")
	if len(c.n) != 0 {
		t.Fatalf("counter keeps %d keys at zero", len(c.n))
	}
}

func TestPlacementGroup(t *testing.T) {
	for _, tc := range []struct {
		root, path string
		depth      int
		want       string
	}{
		{"/v1/stream", "/v1/stream/chat/42/inbox", 1, "chat"},
		{"/v1/stream", "/v1/stream/chat/42/inbox", 2, "chat/42"},
		{"/v1/stream", "/v1/stream/chat/42/inbox", 5, "chat/42/inbox"},
		{"/v1/stream", "/v1/stream/solo", 1, "solo"},
		{"/v1/stream", "/v1/stream", 1, ""},
		{"/", "/chat/42", 1, "chat"},
	} {
		if got := placementGroup(tc.root, tc.path, tc.depth); got != tc.want {
			t.Errorf("placementGroup(%q, %q, %d) = %q, want %q", tc.root, tc.path, tc.depth, got, tc.want)
		}
	}
}

func TestRetryAfterRoundsUp(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "1", time.Millisecond: "1", time.Second: "1",
		1001 * time.Millisecond: "2", 59500 * time.Millisecond: "60"} {
		if got := retryAfterSeconds(d); got != want {
			t.Errorf("retryAfterSeconds(%v) = %s, want %s", d, got, want)
		}
	}
}

// The handler refuses with 429, Retry-After and a reason, by client and by
// group, and counts live reads per client.
func TestAdmitRateLimits(t *testing.T) {
	clk := &manualClock{}
	h := &Handler{StreamRoot: "/v1/stream"}
	h.limits = newRateLimiter(&RateLimits{
		PerClient:                &RateSpec{PerSecond: 1, Burst: 2},
		PerGroup:                 &RateSpec{PerSecond: 1, Burst: 3},
		AppendBytesPerClient:     &RateSpec{PerSecond: 100, Burst: 100},
		MaxLiveSessionsPerClient: 1,
	}, clk.now)
	do := func(method, target, addr string, length int64) (*httptest.ResponseRecorder, func()) {
		r := httptest.NewRequest(method, target, strings.NewReader(""))
		r.RemoteAddr = addr + ":1234"
		r.ContentLength = length
		w := httptest.NewRecorder()
		r2, done, status := h.admit(w, r)
		if r2 == nil && status != w.Code {
			t.Fatalf("admit returned status %d, wrote %d", status, w.Code)
		}
		return w, done
	}
	for i := range 2 {
		if w, _ := do("GET", "/v1/stream/g/s", "10.0.0.1", 0); w.Code != 200 {
			t.Fatalf("request %d: %d", i, w.Code)
		}
	}
	w, _ := do("GET", "/v1/stream/g/s", "10.0.0.1", 0)
	if w.Code != 429 || w.Header().Get("Retry-After") != "1" || w.Body.String() != "too many requests from this client address\n" {
		t.Fatalf("3rd request: %d Retry-After %q body %q", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	// The group has one request left: another client gets it, a third not.
	if w, _ := do("GET", "/v1/stream/g/other", "10.0.0.2", 0); w.Code != 200 {
		t.Fatalf("other client: %d", w.Code)
	}
	if w, _ := do("GET", "/v1/stream/g/s", "10.0.0.3", 0); w.Code != 429 || !strings.Contains(w.Body.String(), "group") {
		t.Fatalf("group over its rate: %d %q", w.Code, w.Body)
	}
	if w, _ := do("GET", "/v1/stream/h/s", "10.0.0.3", 0); w.Code != 200 {
		t.Fatalf("another group: %d", w.Code)
	}
	// Bytes: 150 bytes pass a full bucket of 100 and leave a debt of 50.
	clk.advance(10 * time.Second)
	if w, _ := do("POST", "/v1/stream/b/s", "10.0.0.4", 150); w.Code != 200 {
		t.Fatalf("first append: %d", w.Code)
	}
	w, _ = do("POST", "/v1/stream/b/s", "10.0.0.4", 10)
	if w.Code != 429 || w.Header().Get("Retry-After") != "1" || !strings.Contains(w.Body.String(), "bytes") {
		t.Fatalf("append in debt: %d Retry-After %q %q", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	// Live reads: one per client at once.
	clk.advance(10 * time.Second)
	w, done := do("GET", "/v1/stream/l/s?offset=-1&live=long-poll", "10.0.0.5", 0)
	if w.Code != 200 {
		t.Fatalf("first live read: %d", w.Code)
	}
	if w, _ := do("GET", "/v1/stream/l/s?offset=-1&live=sse", "10.0.0.5", 0); w.Code != 429 || !strings.Contains(w.Body.String(), "live") {
		t.Fatalf("second live read: %d %q", w.Code, w.Body)
	}
	done()
	clk.advance(10 * time.Second)
	if w, _ := do("GET", "/v1/stream/l/s?offset=-1&live=sse", "10.0.0.5", 0); w.Code != 200 {
		t.Fatalf("live read after the first ended: %d", w.Code)
	}
}

func TestCaddyfileRateLimit(t *testing.T) {
	d := caddyfile.NewTestDispenser(`durable_streams {
		rate_limit {
			per_client 100/s burst 200
			per_group 600/m
			append_bytes_per_client 10MiB/s burst 20MiB
			append_bytes_per_group 1GB/h
			max_live_sessions_per_client 8
			group_depth 2
			max_tracked_keys 1000
		}
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	rl := h.RateLimit
	if rl == nil || *rl.PerClient != (RateSpec{100, 200}) || *rl.PerGroup != (RateSpec{10, 0}) ||
		*rl.AppendBytesPerClient != (RateSpec{10 << 20, 20 << 20}) || rl.AppendBytesPerGroup.PerSecond != 1e9/3600 ||
		rl.MaxLiveSessionsPerClient != 8 || rl.GroupDepth != 2 || rl.MaxTrackedKeys != 1000 {
		t.Fatalf("parsed %+v", rl)
	}
	for _, bad := range []string{"per_client 100", "per_client 100/d", "per_client 0/s", "per_client 1/s burst",
		"per_client 1/s bust 2", "group_depth 0", "nonsense 1"} {
		d := caddyfile.NewTestDispenser("durable_streams {\n rate_limit {\n" + bad + "\n}\n}")
		if err := new(Handler).UnmarshalCaddyfile(d); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
