package caddymodule

import (
	"net/http/httptest"
	"testing"
)

// The module's bearer tokens do not apply to requests that carry the
// subscription's own token (callback, ack, release) or need none
// (jwks.json); everything else under __ds needs "subscriptions": true.
func TestSelfAuthenticated(t *testing.T) {
	for _, c := range []struct {
		method, path string
		want         bool
	}{
		{"GET", "/v1/stream/__ds/jwks.json", true},
		{"HEAD", "/v1/stream/__ds/jwks.json", true},
		{"POST", "/v1/stream/__ds/jwks.json", false},
		{"POST", "/v1/stream/__ds/subscriptions/s1/callback", true},
		{"POST", "/v1/stream/__ds/subscriptions/s1/ack", true},
		{"POST", "/v1/stream/__ds/subscriptions/s1/release", true},
		{"POST", "/v1/stream/__ds/subscriptions/s1/claim", false},
		{"GET", "/v1/stream/__ds/subscriptions/s1/callback", false},
		{"PUT", "/v1/stream/__ds/subscriptions/s1", false},
		{"DELETE", "/v1/stream/__ds/subscriptions/s1", false},
		{"POST", "/v1/stream/__ds/subscriptions/s1/streams", false},
		{"POST", "/v1/stream/events/ack", false},
		{"POST", "/v1/stream/x/__ds/subscriptions/s1/ack", false},
	} {
		r := httptest.NewRequest(c.method, "http://h"+c.path, nil)
		if got := selfAuthenticated("/v1/stream", r); got != c.want {
			t.Errorf("%s %s: %v; want %v", c.method, c.path, got, c.want)
		}
	}
}

func TestIsControlPath(t *testing.T) {
	for rel, want := range map[string]bool{"__ds": true, "__ds/jwks.json": true, "__dsx": false, "a/__ds": false, "": false} {
		if got := isControlPath(rel); got != want {
			t.Errorf("isControlPath(%q) = %v; want %v", rel, got, want)
		}
	}
}
