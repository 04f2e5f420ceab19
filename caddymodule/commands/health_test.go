package commands

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/pflag"
)

// runHealth runs the health subcommand's function with these flags.
func runHealth(t *testing.T, args ...string) (int, error) {
	t.Helper()
	fs := pflag.NewFlagSet("health", pflag.ContinueOnError)
	fs.String("url", defaultHealthURL, "")
	fs.Duration("timeout", 3*time.Second, "")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return cmdHealth(caddycmd.Flags{FlagSet: fs})
}

func TestHealthExitCodes(t *testing.T) {
	status := func(code int) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || r.URL.Path != "/health" {
				w.WriteHeader(http.StatusTeapot)
				return
			}
			w.WriteHeader(code)
		}))
		t.Cleanup(srv.Close)
		return srv.URL + "/health"
	}
	// A server that never answers within the timeout.
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	// A port with nothing listening.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/health"
	l.Close()

	cases := []struct {
		name string
		args []string
		want int
	}{
		{"200", []string{"--url", status(200)}, caddy.ExitCodeSuccess},
		{"204", []string{"--url", status(204)}, caddy.ExitCodeSuccess},
		{"503", []string{"--url", status(503)}, caddy.ExitCodeFailedStartup},
		{"404", []string{"--url", status(404)}, caddy.ExitCodeFailedStartup},
		{"300", []string{"--url", status(300)}, caddy.ExitCodeFailedStartup},
		{"refused", []string{"--url", closed}, caddy.ExitCodeFailedStartup},
		{"timeout", []string{"--url", slow.URL + "/health", "--timeout", "200ms"}, caddy.ExitCodeFailedStartup},
		{"bad timeout", []string{"--url", status(200), "--timeout", "0s"}, caddy.ExitCodeFailedStartup},
	}
	for _, c := range cases {
		start := time.Now()
		got, err := runHealth(t, c.args...)
		if got != c.want {
			t.Errorf("%s: exit %d (err %v), want %d", c.name, got, err, c.want)
		}
		if (err == nil) != (c.want == caddy.ExitCodeSuccess) {
			t.Errorf("%s: err %v with exit %d", c.name, err, got)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("%s: took %v; the check must give up at its timeout", c.name, took)
		}
	}
	if ExitCode := caddy.ExitCodeFailedStartup; ExitCode != 1 {
		t.Fatalf("ExitCodeFailedStartup is %d; HEALTHCHECK needs 1 for unhealthy", ExitCode)
	}
}
