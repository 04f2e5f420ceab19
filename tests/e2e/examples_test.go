package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// examplesDir is examples/ at the repository root.
const examplesDir = "../../examples"

// Every examples/*/Caddyfile validates as shipped (its defaults, run from an
// empty directory, as a user would), and each has a test below.
func TestExamplesValidate(t *testing.T) {
	bin := binary(t)
	files, err := filepath.Glob(filepath.Join(examplesDir, "*", "Caddyfile"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found (%v)", err)
	}
	tested := map[string]bool{}
	for _, name := range exampleTests {
		tested[name] = true
	}
	for _, file := range files {
		name := filepath.Base(filepath.Dir(file))
		t.Run(name, func(t *testing.T) {
			abs, _ := filepath.Abs(file)
			cmd := exec.Command(bin, "validate", "--config", abs, "--adapter", "caddyfile")
			cmd.Dir = t.TempDir()
			home := t.TempDir()
			cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, "config"), "XDG_DATA_HOME="+filepath.Join(home, "data"))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("validate %s: %v\n%s", file, err, tail(string(out), 20))
			}
			if !tested[name] {
				t.Errorf("examples/%s has no test in TestExamples", name)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(examplesDir, "README.md")); err != nil {
		t.Errorf("examples/README.md: %v", err)
	}
}

// exampleTests names the examples TestExamples runs.
var exampleTests = []string{"production", "site-level", "auth", "cors", "metrics", "json-logs", "timeouts", "header-limits", "tls-h2"}

// example is one examples/<name>/Caddyfile running on a free port.
type example struct {
	*server
	dir    string // holds data_dir
	client *http.Client
}

// startExample runs examples/<name>/Caddyfile with DS_PORT (or DS_TLS_PORT)
// set to a free port, DS_DATA_DIR to a fresh directory and the admin API
// off (tests run side by side); env adds more variables. Every relative
// default path of the examples is overridden, so nothing lands in the tree.
func startExample(t *testing.T, name string, env ...string) *example {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join(examplesDir, name, "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	dir := t.TempDir()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	if name == "tls-h2" {
		base = fmt.Sprintf("https://localhost:%d", port)
		client.Transport = &http.Transport{
			// Caddy's internal CA is not in our trust store.
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
			ForceAttemptHTTP2: true,
		}
	}
	env = append([]string{
		fmt.Sprintf("DS_PORT=%d", port), fmt.Sprintf("DS_TLS_PORT=%d", port),
		"DS_ADMIN=off", "DS_DATA_DIR=" + filepath.Join(dir, "data"),
	}, env...)
	s := startProcess(t, base, env, "run", "--config", abs, "--adapter", "caddyfile")
	ex := &example{server: s, dir: dir, client: client}
	t.Cleanup(client.CloseIdleConnections)
	ex.waitUp()
	return ex
}

func (ex *example) waitUp() {
	ex.t.Helper()
	ex.WaitOK(ex.client, ex.base+"/health", 30*time.Second)
}

// do sends one request and returns the response with its body read.
func (ex *example) do(method, path string, hdr map[string]string, body string) (*http.Response, string) {
	ex.t.Helper()
	req, err := http.NewRequest(method, ex.base+path, strings.NewReader(body))
	if err != nil {
		ex.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := ex.client.Do(req)
	if err != nil {
		ex.t.Fatalf("%s %s: %v", method, path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// want checks a response's status and, unless empty, that its body contains sub.
func (ex *example) want(method, path string, hdr map[string]string, body string, status int, sub string) *http.Response {
	ex.t.Helper()
	resp, got := ex.do(method, path, hdr, body)
	if resp.StatusCode != status || !strings.Contains(got, sub) {
		ex.t.Errorf("%s %s: %d %q; want %d containing %q", method, path, resp.StatusCode, clip([]byte(got)), status, sub)
	}
	return resp
}

var text = map[string]string{"Content-Type": "text/plain"}

// roundTrip creates a stream, appends and reads it back.
func (ex *example) roundTrip(hdr map[string]string) {
	ex.t.Helper()
	with := map[string]string{"Content-Type": "text/plain"}
	for k, v := range hdr {
		with[k] = v
	}
	ex.want(http.MethodPut, "/v1/stream/example", with, "a", 201, "")
	ex.want(http.MethodPost, "/v1/stream/example", with, "b", 204, "")
	ex.want(http.MethodGet, "/v1/stream/example?offset=-1", hdr, "", 200, "ab")
}

func TestExamples(t *testing.T) {
	binary(t)
	t.Run("production", func(t *testing.T) {
		ex := startExample(t, "production")
		ex.roundTrip(nil)
		ex.want(http.MethodGet, "/nowhere", nil, "", 404, "not found")
		ex.want(http.MethodPut, "/v1/stream/../x", text, "x", 404, "")
		ex.want(http.MethodGet, "/metrics", nil, "", 200, "caddy_durable_streams_")
		if _, err := os.Stat(filepath.Join(ex.dir, "data", "streams.db")); err != nil {
			t.Errorf("data_dir not used: %v", err)
		}
	})

	t.Run("site-level", func(t *testing.T) {
		public := t.TempDir()
		if err := os.WriteFile(filepath.Join(public, "index.html"), []byte("<p>app</p>"), 0o644); err != nil {
			t.Fatal(err)
		}
		ex := startExample(t, "site-level", "DS_SITE_ROOT="+public)
		ex.roundTrip(nil)
		ex.want(http.MethodGet, "/index.html", nil, "", 200, "<p>app</p>")
		ex.want(http.MethodGet, "/nowhere.html", nil, "", 404, "")
	})

	t.Run("auth", func(t *testing.T) {
		ex := startExample(t, "auth") // the default user demo, password demo
		resp := ex.want(http.MethodPut, "/v1/stream/example", text, "a", 401, "")
		if resp.Header.Get("Www-Authenticate") == "" {
			t.Errorf("401 without WWW-Authenticate")
		}
		ex.want(http.MethodGet, "/v1/stream/example?offset=-1", nil, "", 401, "")
		bad := map[string]string{"Authorization": basic("demo", "wrong")}
		ex.want(http.MethodGet, "/v1/stream/example?offset=-1", bad, "", 401, "")
		// The CORS preflight carries no credentials and must get through.
		resp = ex.want(http.MethodOptions, "/v1/stream/example", map[string]string{
			"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
			"Access-Control-Request-Headers": "authorization, content-type",
		}, "", 204, "")
		if got := resp.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(got, "POST") {
			t.Errorf("preflight Access-Control-Allow-Methods %q", got)
		}
		ex.roundTrip(map[string]string{"Authorization": basic("demo", "demo")})
		ex.want(http.MethodGet, "/health", nil, "", 200, "OK")
	})

	t.Run("cors", func(t *testing.T) {
		ex := startExample(t, "cors", "DS_CORS_ORIGIN=https://producer.example")
		resp := ex.want(http.MethodOptions, "/v1/stream/example", map[string]string{
			"Origin": "https://producer.example", "Access-Control-Request-Method": "POST",
			"Access-Control-Request-Headers": "content-type, producer-id, producer-epoch, producer-seq, stream-closed",
		}, "", 204, "")
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "https://producer.example" {
			t.Errorf("preflight Access-Control-Allow-Origin %q", got)
		}
		allowed := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
		for _, h := range []string{"content-type", "producer-id", "producer-epoch", "producer-seq", "stream-closed", "stream-seq", "stream-ttl", "last-event-id"} {
			if !strings.Contains(allowed, h) {
				t.Errorf("preflight Access-Control-Allow-Headers %q lacks %s", allowed, h)
			}
		}
		if got := resp.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(got, "POST") || !strings.Contains(got, "PUT") {
			t.Errorf("preflight Access-Control-Allow-Methods %q", got)
		}
		origin := map[string]string{"Origin": "https://producer.example", "Content-Type": "text/plain"}
		ex.want(http.MethodPut, "/v1/stream/example", origin, "", 201, "")
		producer := map[string]string{"Origin": "https://producer.example", "Content-Type": "text/plain",
			"Producer-Id": "p", "Producer-Epoch": "0", "Producer-Seq": "0"}
		resp = ex.want(http.MethodPost, "/v1/stream/example", producer, "x", 200, "")
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "https://producer.example" {
			t.Errorf("POST Access-Control-Allow-Origin %q", got)
		}
		exposed := resp.Header.Get("Access-Control-Expose-Headers")
		for _, h := range []string{"Stream-Next-Offset", "Stream-Closed", "Producer-Epoch", "Producer-Seq", "Producer-Expected-Seq"} {
			if !strings.Contains(exposed, h) {
				t.Errorf("Access-Control-Expose-Headers %q lacks %s", exposed, h)
			}
		}
	})

	t.Run("metrics", func(t *testing.T) {
		ex := startExample(t, "metrics")
		ex.roundTrip(nil)
		ex.want(http.MethodGet, "/metrics", nil, "", 200, "caddy_durable_streams_requests_total")
	})

	t.Run("json-logs", func(t *testing.T) {
		logFile := filepath.Join(t.TempDir(), "access.log")
		ex := startExample(t, "json-logs", "DS_ACCESS_LOG="+logFile)
		ex.want(http.MethodPut, "/v1/stream/logged", text, "a", 201, "")
		deadline := time.Now().Add(10 * time.Second)
		for {
			entry, ok := findAccessLog(t, logFile, "/v1/stream/logged")
			if ok {
				if status, _ := entry["status"].(float64); status != 201 {
					t.Errorf("access log status %v, want 201: %v", entry["status"], entry)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no JSON access log line for PUT /v1/stream/logged in %s", logFile)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// The server's own log is JSON too.
		for line := range strings.SplitSeq(strings.TrimSpace(ex.Output.String()), "\n") {
			if !json.Valid([]byte(line)) {
				t.Errorf("server log line is not JSON: %q", line)
				break
			}
		}
	})

	t.Run("timeouts", func(t *testing.T) {
		ex := startExample(t, "timeouts", "DS_READ_HEADER_TIMEOUT=1s", "DS_READ_BODY_TIMEOUT=1s", "DS_LONG_POLL_TIMEOUT=2s")
		ex.roundTrip(nil)
		addr := strings.TrimPrefix(ex.base, "http://")
		// Headers that never finish: the connection is closed.
		start := time.Now()
		if reply := slowRequest(t, addr, "GET /health HTTP/1.1\r\nHost: x\r\n"); reply != "" {
			t.Errorf("a request with unfinished headers got %q; want the connection closed", reply)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("unfinished headers held the connection %v; want about read_header (1s)", took)
		}
		// A body that never finishes: refused, nothing appended.
		start = time.Now()
		reply := slowRequest(t, addr, "POST /v1/stream/example HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly part")
		if strings.HasPrefix(reply, "HTTP/1.1 2") {
			t.Errorf("a request with an unfinished body got %q", reply)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("an unfinished body held the connection %v; want about read_body (1s)", took)
		}
		ex.want(http.MethodGet, "/v1/stream/example?offset=-1", nil, "", 200, "ab")
		// read_body does not cut a long-poll longer than it: it ends with
		// the engine's 204 after long_poll_timeout (2s).
		resp, _ := ex.do(http.MethodGet, "/v1/stream/example?offset=now&live=long-poll", nil, "")
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("long-poll: %d, want 204 after long_poll_timeout", resp.StatusCode)
		}
	})

	t.Run("header-limits", func(t *testing.T) {
		pad := func(n int) map[string]string { return map[string]string{"X-Padding": strings.Repeat("a", n)} }
		ex := startExample(t, "header-limits")
		ex.roundTrip(pad(8 << 10))
		ex.want(http.MethodGet, "/v1/stream/example?offset=-1", pad(32<<10), "", 431, "")
		// The limit is the option's, not Caddy's default (also 16KB).
		ex = startExample(t, "header-limits", "DS_MAX_HEADER_SIZE=64KB")
		ex.roundTrip(pad(40 << 10))
		ex.want(http.MethodGet, "/v1/stream/example?offset=-1", pad(100<<10), "", 431, "")
	})

	t.Run("tls-h2", func(t *testing.T) {
		ex := startExample(t, "tls-h2")
		ex.roundTrip(nil)
		resp := ex.want(http.MethodGet, "/v1/stream/example?offset=-1", nil, "", 200, "ab")
		if resp.ProtoMajor != 2 || resp.TLS == nil {
			t.Errorf("got %s (TLS %v); want HTTP/2 over TLS", resp.Proto, resp.TLS != nil)
		}
		// An SSE read over HTTP/2 streams from Go and delivers the data.
		resp, body := ex.doSSE("/v1/stream/example?offset=-1&live=sse")
		if resp.ProtoMajor != 2 || !strings.Contains(body, "data:ab") {
			t.Errorf("SSE over %s: %q", resp.Proto, body)
		}
	})
}

// doSSE reads an SSE response until its first control event.
func (ex *example) doSSE(path string) (*http.Response, string) {
	ex.t.Helper()
	resp, err := ex.client.Get(ex.base + path)
	if err != nil {
		ex.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	var got strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		got.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "id: ") {
			break
		}
	}
	return resp, got.String()
}

func basic(user, password string) string {
	req, _ := http.NewRequest(http.MethodGet, "http://x", nil)
	req.SetBasicAuth(user, password)
	return req.Header.Get("Authorization")
}

// findAccessLog returns the JSON access log entry for uri, if written yet.
// Every line of the file must be JSON.
func findAccessLog(t *testing.T, file, uri string) (map[string]any, bool) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, false
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("access log line is not JSON: %q", line)
		}
		if req, ok := entry["request"].(map[string]any); ok && req["uri"] == uri {
			return entry, true
		}
	}
	return nil, false
}

// slowRequest writes raw, then waits (at most 10s) for the server to answer
// or close the connection; it returns what the server sent.
func slowRequest(t *testing.T, addr, raw string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("the server neither answered nor closed within 10s (got %q)", got)
	}
	return string(got)
}
