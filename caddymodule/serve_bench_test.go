package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/durable-streams-server/durable-streams-server/native"
)

// The handler's own cost per request (engine call included, network and
// Caddy's routing excluded): go test -bench . -benchmem ./caddymodule/
// allocs/op is the number to watch; the bench's srv CPU is the end-to-end one.

func benchHandler(b *testing.B) *Handler {
	b.Helper()
	e, err := native.Open(native.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.Close)
	return &Handler{MaxAppendSize: DefaultMaxAppendSize, engine: nativeEngine{e}, logger: zap.NewNop(), stopping: newStopSignal(),
		bodies: newBodyBudget(DefaultMaxInflightBodyBytes)}
}

func benchServe(b *testing.B, h *Handler, method, target, contentType, body string, want int) {
	b.Helper()
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, nil); err != nil || w.Code != want {
			b.Fatalf("%s %s: %d %v", method, target, w.Code, err)
		}
	}
}

func BenchmarkServeReadSmall(b *testing.B) {
	h := benchHandler(b)
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPut, "/v1/stream/r", strings.NewReader(strings.Repeat("a", 1000)))
	r.Header.Set("Content-Type", "text/plain")
	if err := h.ServeHTTP(w, r, nil); err != nil || w.Code != http.StatusCreated {
		b.Fatalf("PUT: %d %v", w.Code, err)
	}
	benchServe(b, h, http.MethodGet, "/v1/stream/r?offset=-1", "", "", http.StatusOK)
}

func BenchmarkServeAppend(b *testing.B) {
	h := benchHandler(b)
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPut, "/v1/stream/a", nil)
	r.Header.Set("Content-Type", "text/plain")
	if err := h.ServeHTTP(w, r, nil); err != nil || w.Code != http.StatusCreated {
		b.Fatalf("PUT: %d %v", w.Code, err)
	}
	benchServe(b, h, http.MethodPost, "/v1/stream/a", "text/plain", strings.Repeat("x", 100), http.StatusNoContent)
}
