package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// A request outside stream_root is not the engine's: it goes on to the next
// handler untouched, so `durable_streams` without a matcher composes with
// /health, metrics or file_server in a site block.
func TestOutsideStreamRootGoesToNextHandler(t *testing.T) {
	for _, tc := range []struct {
		root, path string
		ours       bool
	}{
		{"/v1/stream", "/health", false},
		{"/v1/stream", "/metrics", false},
		{"/v1/stream", "/", false},
		{"/v1/stream", "/v1/streams/a", false}, // a prefix of a segment is not below it
		{"/v1/stream", "/v1", false},
		{"/v1/stream", "/v1/stream", true},
		{"/v1/stream", "/v1/stream/a/b", true},
		{"/v1/stream", "/v1/stream/__ds/subscriptions/x", true},
		{"", "/v1/stream/a", true}, // empty means the default root
		{"", "/health", false},
		{"/", "/health", true},
		{"/", "/", true},
	} {
		e := newFakeEngine(&fakeResponse{status: 200, body: "engine"})
		h := testHandler(e)
		h.StreamRoot = tc.root
		nextCalled := false
		next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			nextCalled = true
			w.WriteHeader(http.StatusTeapot)
			return nil
		})
		w := newRecorder()
		if err := h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tc.path, nil), next); err != nil {
			t.Fatalf("root %q path %q: %v", tc.root, tc.path, err)
		}
		_, _, released, _ := e.snapshot()
		engineCalled := released > 0
		if engineCalled != tc.ours || nextCalled == tc.ours {
			t.Errorf("root %q path %q: engine called %v, next called %v; want the engine only if ours (%v)",
				tc.root, tc.path, engineCalled, nextCalled, tc.ours)
		}
		if !tc.ours && w.Code != http.StatusTeapot {
			t.Errorf("root %q path %q: status %d, want the next handler's 418", tc.root, tc.path, w.Code)
		}
	}
}
