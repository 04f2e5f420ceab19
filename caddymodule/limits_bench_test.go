package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The small read's cost per request with rate limits and with a token
// (HS256, EdDSA), next to BenchmarkServeReadSmall's:
// go test -bench 'ServeReadSmall' -benchmem ./caddymodule/

func benchReadWith(b *testing.B, setup func(h *Handler), auth string) {
	h := benchHandler(b)
	h.StreamRoot = DefaultStreamRoot
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPut, "/v1/stream/chat/42/r", strings.NewReader(strings.Repeat("a", 1000)))
	r.Header.Set("Content-Type", "text/plain")
	if err := h.ServeHTTP(w, r, nil); err != nil || w.Code != http.StatusCreated {
		b.Fatalf("PUT: %d %v", w.Code, err)
	}
	setup(h)
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodGet, "/v1/stream/chat/42/r?offset=-1", nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, nil); err != nil || w.Code != http.StatusOK {
			b.Fatalf("GET: %d %v %q", w.Code, err, w.Body)
		}
	}
}

func BenchmarkServeReadSmallRateLimited(b *testing.B) {
	benchReadWith(b, func(h *Handler) {
		h.limits = newRateLimiter(&RateLimits{PerClient: &RateSpec{PerSecond: 1e9}, PerGroup: &RateSpec{PerSecond: 1e9}}, monotonic)
	}, "")
}

func BenchmarkServeReadSmallToken(b *testing.B) {
	k := newTestKeys(b)
	claims := validClaims()
	for _, tc := range []struct {
		name string
		hdr  map[string]any
		key  any
	}{
		{"HS256", map[string]any{"alg": "HS256", "kid": "hs1"}, k.hmac},
		{"EdDSA", map[string]any{"alg": "EdDSA", "kid": "ed1"}, k.ed},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tok := mintToken(b, tc.hdr, claims, tc.key)
			benchReadWith(b, func(h *Handler) {
				h.tokens = k.verifier(b)
				h.tokens.now = func() time.Time { return testNow }
			}, "Bearer "+tok)
		})
	}
}
