package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// wrapping stands for middleware that wraps the ResponseWriter and may
// rewrite the answer (encode, a deferred header, templates, ...).
type wrapping struct{ http.ResponseWriter }

func (w wrapping) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func TestLongPollTakeoverOnlyPastPassThroughWriters(t *testing.T) {
	got := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got["net/http's own"] = passThroughWriters(w)
		got["wrapped by unknown middleware"] = passThroughWriters(wrapping{w})
	}))
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	want := map[string]bool{"net/http's own": true, "wrapped by unknown middleware": false}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: takeover %v, want %v", k, got[k], v)
		}
	}
}

func TestEncodeHeaderBlockSkipsInvalidNames(t *testing.T) {
	hdr := http.Header{"X-A": {"1", "2"}, "Bad Name": {"x"}}
	if got, want := string(encodeHeaderBlock(hdr)), "X-A\x001\x00X-A\x002\x00"; got != want {
		t.Errorf("encodeHeaderBlock = %q, want %q", got, want)
	}
}
