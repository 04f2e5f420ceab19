package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// `durable_streams` without a matcher, in a site block with /health and
// file_server: stream paths go to the engine, everything else to the next
// handler (a Kubernetes probe gets the health answer, not "stream not found").
func TestSiteLevelDirectiveComposes(t *testing.T) {
	site := t.TempDir()
	if err := os.WriteFile(filepath.Join(site, "index.html"), []byte("<p>static</p>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startCaddyfile(t, `{
	admin off
	auto_https off
}

http://127.0.0.1:%d {
	encode gzip
	durable_streams
	respond /health "OK" 200
	root * `+strings.ReplaceAll(site, "%", "%%")+`
	file_server
}
`)
	c := &http.Client{Timeout: 10 * time.Second}
	expect(t, c, http.MethodGet, srv.base+"/health", "", 200, "OK")
	expect(t, c, http.MethodGet, srv.base+"/index.html", "", 200, "<p>static</p>\n")
	expect(t, c, http.MethodGet, srv.base+"/missing.html", "", 404, "")
	expect(t, c, http.MethodPut, srv.base+"/v1/stream/a", "hi", 201, "")
	expect(t, c, http.MethodGet, srv.base+"/v1/stream/a?offset=-1", "", 200, "hi")
	expect(t, c, http.MethodGet, srv.base+"/v1/stream/none?offset=-1", "", 404, "stream not found")
}

// The shipped Caddyfile.example and `dev` answer a path that is cleaned out
// of the stream route with 404, never Caddy's empty 200 (a client would
// believe its PUT worked), and create nothing.
func TestCleanedPathsAreNotFound(t *testing.T) {
	example, err := os.ReadFile("../../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(example)
	cfg = regexp.MustCompile(`(?m)^(\s*)admin\b.*$`).ReplaceAllString(cfg, "${1}admin off")
	cfg = strings.Replace(cfg, "/var/lib/durable-streams", filepath.Join(t.TempDir(), "data"), 1)
	cfg = strings.ReplaceAll(cfg, "%", "%%")
	if !strings.Contains(cfg, "\n:4437 {") {
		t.Fatalf("Caddyfile.example has no ':4437 {' site to rewrite:\n%s", cfg)
	}
	cfg = strings.Replace(cfg, "\n:4437 {", "\nhttp://127.0.0.1:%d {", 1)

	t.Run("Caddyfile.example", func(t *testing.T) {
		checkCleanedPaths(t, startCaddyfile(t, cfg))
	})
	t.Run("dev", func(t *testing.T) {
		port := freePort(t)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		srv := startProcess(t, "http://"+addr, nil, "dev", "--listen", addr)
		srv.waitHealthy(30 * time.Second)
		checkCleanedPaths(t, srv)
	})
}

func checkCleanedPaths(t *testing.T, srv *server) {
	c := &http.Client{Timeout: 10 * time.Second}
	expect(t, c, http.MethodGet, srv.base+"/health", "", 200, "OK")
	expect(t, c, http.MethodGet, srv.base+"/nowhere", "", 404, "not found")
	for _, path := range []string{"/v1/stream/../x", "/v1/stream/..%2fx", "/v1/stream/%2e%2e/x"} {
		expect(t, c, http.MethodPut, srv.base+path, "lost?", 404, "")
		expect(t, c, http.MethodPost, srv.base+path, "lost?", 404, "")
	}
	expect(t, c, http.MethodGet, srv.base+"/v1/stream/x?offset=-1", "", 404, "")
	expect(t, c, http.MethodPut, srv.base+"/v1/stream/ok", "kept", 201, "")
	expect(t, c, http.MethodGet, srv.base+"/v1/stream/ok?offset=-1", "", 200, "kept")
}

// expect sends one request and checks its status and, unless want is empty,
// that its body contains want.
func expect(t *testing.T, c *http.Client, method, url, body string, status int, want string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "text/plain")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != status || !strings.Contains(string(got), want) {
		t.Errorf("%s %s: %d %q; want %d containing %q", method, url, resp.StatusCode, got, status, want)
	}
}
