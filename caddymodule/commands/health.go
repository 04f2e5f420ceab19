package commands

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// defaultHealthURL is where the dev server and the shipped Caddyfiles answer.
const defaultHealthURL = "http://127.0.0.1:4437/health"

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "health",
		Usage: "[--url <url>] [--timeout <duration>]",
		Short: "Checks that a server answers its health endpoint (exit 0 if healthy)",
		Long: `
Sends GET to the health URL and exits 0 if the answer is 2xx, 1 otherwise
(another status, no answer, or no answer within --timeout). It needs no
shell or other tools, so a container's HEALTHCHECK can run it:

	HEALTHCHECK CMD ["durable-streams-server", "health"]

Proxy environment variables are ignored: the check goes straight to --url.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("url", defaultHealthURL, "The health endpoint to check")
			cmd.Flags().Duration("timeout", 3*time.Second, "How long to wait for the answer")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdHealth)
		},
	})
}

func cmdHealth(fl caddycmd.Flags) (int, error) {
	url := fl.String("url")
	timeout := fl.Duration("timeout")
	if timeout <= 0 {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--timeout must be positive: %s", timeout)
	}
	status, err := checkHealth(url, timeout)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	fmt.Fprintf(os.Stdout, "healthy: %s answered %d\n", url, status)
	return caddy.ExitCodeSuccess, nil
}

// checkHealth returns the status of GET url, or an error unless it is 2xx.
func checkHealth(url string, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("health: %w", err)
	}
	// No proxy: a container's HTTP_PROXY must not send the check elsewhere.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("health: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("health: %s answered %d", url, resp.StatusCode)
	}
	return resp.StatusCode, nil
}
