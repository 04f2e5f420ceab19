package cache

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/durable-streams-server/durable-streams-server/tests/internal/dsserver"
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
	bin := dsserver.Binary(t)
	varnishd, err := exec.LookPath("varnishd")
	if err != nil {
		if _, statErr := os.Stat("/usr/sbin/varnishd"); statErr != nil {
			t.Skip("SKIP: varnishd is not installed (apt-get install varnish); the shared-cache tests need it")
		}
		varnishd = "/usr/sbin/varnishd"
	}
	dir := t.TempDir()
	origin := dsserver.StartServer(t, bin, func(port int) string {
		return fmt.Sprintf(caddyfile, port, longPollTimeout, sseReconnectInterval)
	})

	vcl, err := os.ReadFile(vclPath(t))
	if err != nil {
		t.Fatal(err)
	}
	portLine := regexp.MustCompile(`\.port = "\d+";`)
	if !portLine.Match(vcl) {
		t.Fatal("the VCL has no backend .port line to point at the test server")
	}
	vcl = portLine.ReplaceAll(vcl, []byte(fmt.Sprintf(`.port = "%d";`, origin.Port)))
	vclFile := filepath.Join(dir, "durable-streams.vcl")
	if err := os.WriteFile(vclFile, vcl, 0o644); err != nil {
		t.Fatal(err)
	}
	cachePort := dsserver.FreePort(t)
	vdir := filepath.Join(dir, "varnish")
	// -j none: no privilege separation (the work directory is the test's).
	varnish := dsserver.Start(t, varnishd, nil, "-F", "-j", "none", "-n", vdir,
		"-a", fmt.Sprintf("127.0.0.1:%d", cachePort), "-T", "127.0.0.1:0",
		"-f", vclFile, "-s", "malloc,64m")
	cache := fmt.Sprintf("http://127.0.0.1:%d", cachePort)
	varnish.WaitOK(nil, cache+"/health", 30*time.Second)
	return &topology{origin: origin.Base, cache: cache, varnishDir: vdir}
}

func vclPath(t *testing.T) string {
	return filepath.Join(dsserver.RepoRoot(t), "packaging", "varnish", "durable-streams.vcl")
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
