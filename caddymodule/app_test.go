package caddymodule

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/durable-streams-server/durable-streams-server/native"
)

// A request that reaches a handler before the durable_streams app opened
// its engine waits for it; one whose engine never opens gets 503.
func TestRequestsWaitForTheEngine(t *testing.T) {
	e := newFakeEngine(&fakeResponse{status: 200, body: "x"})
	h := testHandler(nil)
	h.ready = newStopSignal()
	w := newRecorder()
	wait := serveAsync(h, w, httptest.NewRequest(http.MethodGet, "/v1/stream/s", nil))
	h.engine = e // as open does, before markReady
	h.markReady()
	if err := wait(); err != nil || w.Code != 200 || w.Body.String() != "x" {
		t.Errorf("request served once the engine is ready: %v %d %q; want 200 x", err, w.Code, w.Body.String())
	}

	never := testHandler(nil)
	never.ready = newStopSignal()
	wait = serveAsync(never, newRecorder(), httptest.NewRequest(http.MethodGet, "/v1/stream/s", nil))
	if err := never.Cleanup(); err != nil { // the config failed to start
		t.Fatal(err)
	}
	err := wait()
	if he, ok := errors.AsType[caddyhttp.HandlerError](err); !ok || he.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("request to a handler whose engine never opened: %v; want a 503 error", err)
	}
}

// The lease gives the engine back to the pool only once the handler and
// every request holding it are done.
func TestEngineLeaseOutlivesCleanupUntilTheLastRequest(t *testing.T) {
	opts := native.Options{StreamRoot: "/lease-test"}
	key := poolKey(opts)
	if _, _, err := loadEngine(key, opts); err != nil {
		t.Fatal(err)
	}
	l := newEngineLease(key)
	l.hold() // a request in flight
	l.done() // the handler's Cleanup
	if n, ok := engines.References(key); !ok || n != 1 {
		t.Fatalf("after Cleanup with a request in flight: %d references (%v); want the engine kept", n, ok)
	}
	l.done() // the request ends
	if _, ok := engines.References(key); ok {
		t.Fatal("the engine is still pooled after its last request ended")
	}
	l.hold() // a straggler: must not release twice
	l.done()
}

func TestCheckDataDir(t *testing.T) {
	root := t.TempDir()
	if err := checkDataDir(filepath.Join(root, "a", "b")); err != nil {
		t.Errorf("a data_dir to be created under a writable directory: %v", err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("checkDataDir created %s", entries[0].Name())
	}
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkDataDir(filepath.Join(file, "data")); err == nil || !strings.Contains(err.Error(), file+" is not a directory") {
		t.Errorf("a data_dir below a file: %v; want it named as not a directory", err)
	}
}
