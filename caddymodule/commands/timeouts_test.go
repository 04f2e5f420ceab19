package commands

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/durable-streams-server/durable-streams-server/caddymodule"
)

// serverTimeouts are the read timeouts of one HTTP server in a JSON config.
type serverTimeouts struct {
	ReadTimeout       time.Duration `json:"read_timeout"`
	ReadHeaderTimeout time.Duration `json:"read_header_timeout"`
}

func httpServers(t *testing.T, appsHTTP json.RawMessage) map[string]serverTimeouts {
	t.Helper()
	var app struct {
		Servers map[string]serverTimeouts `json:"servers"`
	}
	if err := json.Unmarshal(appsHTTP, &app); err != nil {
		t.Fatalf("decoding the http app: %v", err)
	}
	if len(app.Servers) == 0 {
		t.Fatal("no HTTP servers in the config")
	}
	return app.Servers
}

func checkTimeouts(t *testing.T, what string, servers map[string]serverTimeouts) {
	t.Helper()
	for name, s := range servers {
		if s.ReadTimeout != readBodyTimeout || s.ReadHeaderTimeout != readHeaderTimeout {
			t.Errorf("%s: server %s has read_body %v, read_header %v; want %v and %v",
				what, name, s.ReadTimeout, s.ReadHeaderTimeout, readBodyTimeout, readHeaderTimeout)
		}
	}
}

// The shipped configs bound how long a client may take to send a request,
// so a trickling body cannot hold a connection and its memory forever.
func TestDevConfigSetsReadTimeouts(t *testing.T) {
	cfg, err := devConfig(devOptions{listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	checkTimeouts(t, "dev", httpServers(t, cfg.AppsRaw["http"]))
}

func TestCaddyfileExampleSetsReadTimeouts(t *testing.T) {
	checkCaddyfileTimeouts(t, "../../Caddyfile.example")
}

func TestDockerCaddyfileSetsReadTimeouts(t *testing.T) {
	checkCaddyfileTimeouts(t, "../../packaging/docker/Caddyfile")
}

func checkCaddyfileTimeouts(t *testing.T, path string) {
	t.Helper()
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(body, map[string]any{"filename": path})
	if err != nil {
		t.Fatalf("adapting %s: %v", path, err)
	}
	var cfg struct {
		Apps struct {
			HTTP json.RawMessage `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	checkTimeouts(t, path, httpServers(t, cfg.Apps.HTTP))
}
