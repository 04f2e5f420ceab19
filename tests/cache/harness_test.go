package cache

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Short live timeouts so a whole round (timeout, reconnect) fits in seconds.
const (
	longPollTimeout      = 3 * time.Second
	sseReconnectInterval = 3 * time.Second
)

const caddyfile = `{
	admin off
	auto_https off
	persist_config off
}
http://127.0.0.1:%d {
	handle /health {
		respond "OK" 200
	}
	route /v1/stream/* {
		durable_streams {
			long_poll_timeout %s
			sse_reconnect_interval %s
		}
	}
}
`

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// process is a child started by the test and stopped (SIGTERM, then
// SIGKILL) when the test ends.
type process struct {
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{}
}

func start(t *testing.T, name string, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(name, args...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &process{cmd: cmd, out: out, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s output (last 3000 bytes):\n%s", filepath.Base(name), lastBytes(out.String(), 3000))
		}
	})
	return p
}

func lastBytes(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// topology is our server (memory mode) and Varnish in front of it.
type topology struct {
	origin, cache string // base URLs
	varnishDir    string
}

// startTopology starts the server and varnishd with the shipped VCL, its
// backend port replaced by the server's.
func startTopology(t *testing.T) *topology {
	t.Helper()
	// make test-cache sets DS_CACHE_TEST; `go test ./...` (make test-go)
	// leaves this package to it rather than running Varnish twice.
	if os.Getenv("DS_CACHE_TEST") != "1" {
		t.Skip("DS_CACHE_TEST is not 1; run make test-cache")
	}
	bin := os.Getenv("DS_BIN")
	if bin == "" {
		t.Skip("DS_BIN is not set; set it to the durable-streams-server binary")
	}
	varnishd, err := exec.LookPath("varnishd")
	if err != nil {
		if _, statErr := os.Stat("/usr/sbin/varnishd"); statErr != nil {
			t.Skip("SKIP: varnishd is not installed (apt-get install varnish); the shared-cache tests need it")
		}
		varnishd = "/usr/sbin/varnishd"
	}
	dir := t.TempDir()
	originPort := freePort(t)
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(caddyfile, originPort, longPollTimeout, sseReconnectInterval)), 0o644); err != nil {
		t.Fatal(err)
	}
	start(t, bin, []string{"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"), "XDG_DATA_HOME=" + filepath.Join(dir, "data")},
		"run", "--config", cfg, "--adapter", "caddyfile")
	origin := fmt.Sprintf("http://127.0.0.1:%d", originPort)
	waitOK(t, origin+"/health")

	vcl, err := os.ReadFile(vclPath(t))
	if err != nil {
		t.Fatal(err)
	}
	portLine := regexp.MustCompile(`\.port = "\d+";`)
	if !portLine.Match(vcl) {
		t.Fatal("the VCL has no backend .port line to point at the test server")
	}
	vcl = portLine.ReplaceAll(vcl, []byte(fmt.Sprintf(`.port = "%d";`, originPort)))
	vclFile := filepath.Join(dir, "durable-streams.vcl")
	if err := os.WriteFile(vclFile, vcl, 0o644); err != nil {
		t.Fatal(err)
	}
	cachePort := freePort(t)
	vdir := filepath.Join(dir, "varnish")
	// -j none: no privilege separation (the work directory is the test's).
	start(t, varnishd, nil, "-F", "-j", "none", "-n", vdir,
		"-a", fmt.Sprintf("127.0.0.1:%d", cachePort), "-T", "127.0.0.1:0",
		"-f", vclFile, "-s", "malloc,64m")
	cache := fmt.Sprintf("http://127.0.0.1:%d", cachePort)
	waitOK(t, cache+"/health")
	return &topology{origin: origin, cache: cache, varnishDir: vdir}
}

func vclPath(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "..", "..", "packaging", "varnish", "durable-streams.vcl")
}

func waitOK(t *testing.T, url string) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s did not answer 200 within 30s (last error %v)", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stat reads one Varnish counter (varnishstat -1 -f NAME).
func (tp *topology) stat(t *testing.T, name string) int64 {
	t.Helper()
	out, err := exec.Command("varnishstat", "-n", tp.varnishDir, "-1", "-f", name).CombinedOutput()
	if err != nil {
		t.Fatalf("varnishstat %s: %v: %s", name, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == name {
			v, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatalf("varnishstat %s: bad value in %q", name, line)
			}
			return v
		}
	}
	t.Fatalf("varnishstat: no %s in %q", name, out)
	return 0
}

// backendReqs is the number of requests Varnish has sent to the origin.
func (tp *topology) backendReqs(t *testing.T) int64 { return tp.stat(t, "MAIN.backend_req") }

type reply struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, client *http.Client, method, url string, hdr map[string]string, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return reply{resp.StatusCode, resp.Header, string(b)}
}

func want(t *testing.T, what string, got, wanted any) {
	t.Helper()
	if got != wanted {
		t.Fatalf("%s: got %v, want %v", what, got, wanted)
	}
}

// createStream makes a text/plain stream at path on the origin with body.
func (tp *topology) createStream(t *testing.T, path, body string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	r := do(t, c, "PUT", tp.origin+path, map[string]string{"Content-Type": "text/plain"}, "")
	want(t, "PUT "+path, r.status, 201)
	if body != "" {
		tp.appendOrigin(t, path, body)
	}
}

func (tp *topology) appendOrigin(t *testing.T, path, body string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	r := do(t, c, "POST", tp.origin+path, map[string]string{"Content-Type": "text/plain"}, body)
	if r.status != 204 && r.status != 200 {
		t.Fatalf("append to %s: status %d %q", path, r.status, r.body)
	}
	return r.header.Get("Stream-Next-Offset")
}

// xvarnishIDs is how many transaction ids X-Varnish carries: 1 for a miss
// or pass, 2 (this request and the one that stored the object) for a hit.
func xvarnishIDs(h http.Header) int { return len(strings.Fields(h.Get("X-Varnish"))) }
