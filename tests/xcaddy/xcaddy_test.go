// Package xcaddy builds a custom Caddy the way Caddy users add plugins —
// `CGO_ENABLED=1 xcaddy build --with <this module>` — next to a second
// plugin, and checks that the result has the durable_streams handler and our
// subcommands and serves a stream with data_dir.
//
// The build takes minutes on a cold Go build cache, so it runs only with
// DS_XCADDY=1 (make test-xcaddy). xcaddy comes from $XCADDY, PATH,
// $GOPATH/bin, or `go install` from the Go module proxy; if none works the
// test is skipped and says why.
package xcaddy

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/durable-streams-server/durable-streams-server/tests/internal/dsserver"
)

const (
	modulePath = "github.com/durable-streams-server/durable-streams-server"
	// xcaddyVersion is what `go install` fetches when xcaddy is not installed.
	xcaddyVersion = "v0.4.5"
)

// findXcaddy returns an xcaddy binary, installing it from the module proxy if needed.
func findXcaddy(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("XCADDY"); p != "" {
		return p
	}
	if p, err := exec.LookPath("xcaddy"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "xcaddy")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	gobin := t.TempDir()
	cmd := exec.Command("go", "install", "github.com/caddyserver/xcaddy/cmd/xcaddy@"+xcaddyVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+gobin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("xcaddy is not installed and the Go module proxy cannot serve it (%v):\n%s", err, out)
	}
	return filepath.Join(gobin, "xcaddy")
}

// caddyVersion is the Caddy version our go.mod requires (so the build cache is warm).
func caddyVersion(t *testing.T) string {
	t.Helper()
	gomod, err := os.ReadFile(filepath.Join(dsserver.RepoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github.com/caddyserver/caddy/v2 (v\S+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod does not require github.com/caddyserver/caddy/v2")
	}
	return string(m[1])
}

// writeOtherPlugin writes a second, unrelated plugin module: a handler that
// answers "other plugin". The Go module proxy here serves no published Caddy
// plugin, so this one stands in for one.
func writeOtherPlugin(t *testing.T, version string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module example.com/otherplugin\n\ngo 1.25\n\nrequire github.com/caddyserver/caddy/v2 " + version + "\n",
		"plugin.go": `// Package otherplugin is a stand-in for any other Caddy plugin.
package otherplugin

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Other{})
	httpcaddyfile.RegisterHandlerDirective("other_plugin", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		h.Next()
		return Other{}, nil
	})
	httpcaddyfile.RegisterDirectiveOrder("other_plugin", httpcaddyfile.Before, "respond")
}

type Other struct{}

func (Other) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.other_plugin", New: func() caddy.Module { return new(Other) }}
}

func (Other) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	_, err := w.Write([]byte("other plugin"))
	return err
}

var _ caddyfile.Unmarshaler = (*Other)(nil)

func (*Other) UnmarshalCaddyfile(d *caddyfile.Dispenser) error { return nil }
`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestXcaddyBuild(t *testing.T) {
	if os.Getenv("DS_XCADDY") != "1" {
		t.Skip("the xcaddy build takes minutes; run it with DS_XCADDY=1 (make test-xcaddy)")
	}
	xcaddy := findXcaddy(t)
	version := caddyVersion(t)
	other := writeOtherPlugin(t, version)
	out := filepath.Join(t.TempDir(), "caddy")

	// A checkout is not on the module proxy, so its version is pinned
	// (@v0.0.0) for the replacement; a published release needs no "=path".
	build := exec.Command(xcaddy, "build", version, "--output", out,
		"--with", modulePath+"@v0.0.0="+dsserver.RepoRoot(t),
		"--with", "example.com/otherplugin@v0.0.0="+other)
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	build.Dir = t.TempDir()
	start := time.Now()
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("xcaddy build: %v\n%s", err, b)
	}
	t.Logf("xcaddy build: %v", time.Since(start).Round(time.Second))

	mods, err := exec.Command(out, "list-modules").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"http.handlers.durable_streams", "http.handlers.other_plugin", "http.handlers.reverse_proxy"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(m) + `$`).Match(mods) {
			t.Errorf("list-modules lacks %s", m)
		}
	}
	help, _ := exec.Command(out, "help").CombinedOutput()
	for _, c := range []string{"dev", "backup", "health"} {
		if !regexp.MustCompile(`(?m)^\s+` + c + `\s`).Match(help) {
			t.Errorf("the custom build lacks the %s subcommand:\n%s", c, help)
		}
	}

	// Serve a stream with data_dir, and the other plugin beside it.
	dir := t.TempDir()
	port := dsserver.FreePort(t)
	caddyfile := fmt.Sprintf(`{
	admin off
	auto_https off
}
:%d {
	bind 127.0.0.1
	handle /health {
		respond "OK" 200
	}
	route /v1/stream/* {
		durable_streams {
			data_dir %s
		}
	}
	route /other {
		other_plugin
	}
}
`, port, filepath.Join(dir, "data"))
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(caddyfile), 0o644); err != nil {
		t.Fatal(err)
	}
	dsserver.Start(t, out, []string{"XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}, "run", "--config", filepath.Join(dir, "Caddyfile"))

	// The health subcommand of the custom build waits for it.
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(30 * time.Second)
	for exec.Command(out, "health", "--url", url+"/health", "--timeout", "1s").Run() != nil {
		if time.Now().After(deadline) {
			t.Fatal("the custom build never became healthy")
		}
		time.Sleep(50 * time.Millisecond)
	}
	dsserver.TextRequest(t, http.MethodPut, url+"/v1/stream/xcaddy", "", http.StatusCreated)
	dsserver.TextRequest(t, http.MethodPost, url+"/v1/stream/xcaddy", "built with xcaddy", http.StatusNoContent)
	if got := dsserver.TextRequest(t, http.MethodGet, url+"/v1/stream/xcaddy?offset=-1", "", http.StatusOK); got != "built with xcaddy" {
		t.Fatalf("read back %q", got)
	}
	if got := dsserver.TextRequest(t, http.MethodGet, url+"/other", "", http.StatusOK); got != "other plugin" {
		t.Fatalf("/other: %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "streams.db", "data.mdb")); err != nil {
		t.Fatalf("data_dir was not used: %v", err)
	}
}
