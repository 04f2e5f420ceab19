package commands

import (
	"encoding/json"
	"fmt"
	"net"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/spf13/cobra"

	"github.com/durable-streams-server/durable-streams-server/caddymodule"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "dev",
		Usage: "[--listen <addr>] [--data-dir <path>] [--long-poll-timeout <duration>] [--sse-reconnect-interval <duration>]",
		Short: "Starts a zero-config development server (in memory by default)",
		Long: `
Starts a Durable Streams server without a config file: streams are served
under /v1/stream/*, /health answers 200 OK, any other path 404, the admin
API is off and automatic HTTPS is off. Without --data-dir, streams live in memory and are
lost when the server stops. Stop it with Ctrl-C (SIGINT) or SIGTERM.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().StringP("listen", "l", ":4437", "The address to listen on")
			cmd.Flags().String("data-dir", "", "Directory for durable storage (default: in memory)")
			cmd.Flags().String("long-poll-timeout", "", "How long a long-poll waits (default: 30s)")
			cmd.Flags().String("sse-reconnect-interval", "", "How long an SSE connection stays open (default: 60s)")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdDev)
		},
	})
}

// devOptions are the dev command's flags.
type devOptions struct {
	listen               string
	dataDir              string
	longPollTimeout      time.Duration
	sseReconnectInterval time.Duration
}

func cmdDev(fl caddycmd.Flags) (int, error) {
	caddy.TrapSignals()

	opts := devOptions{
		listen:  fl.String("listen"),
		dataDir: fl.String("data-dir"),
	}
	var err error
	if opts.longPollTimeout, err = durationFlag(fl, "long-poll-timeout"); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if opts.sseReconnectInterval, err = durationFlag(fl, "sse-reconnect-interval"); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}

	cfg, err := devConfig(opts)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if err := caddy.Run(cfg); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	printBanner(opts)
	select {} // until a signal makes Caddy stop and exit
}

func durationFlag(fl caddycmd.Flags, name string) (time.Duration, error) {
	s := fl.String(name)
	if s == "" {
		return 0, nil
	}
	d, err := caddy.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("--%s: %v", name, err)
	}
	if d <= 0 {
		return 0, fmt.Errorf("--%s must be positive: %s", name, s)
	}
	return d, nil
}

// The read timeouts the shipped configs set (Caddy's `timeouts { read_header
// read_body }`): headers within 10s, the whole request within 60s, which
// still lets a 64 MiB append (the default max_append_size) arrive at about
// 1.1 MB/s.
const (
	readHeaderTimeout = 10 * time.Second
	readBodyTimeout   = 60 * time.Second
)

// devConfig builds the dev server's JSON config: one HTTP server, no admin
// API, no automatic HTTPS, /health and the stream routes.
func devConfig(opts devOptions) (*caddy.Config, error) {
	streams := caddymodule.Handler{
		DataDir:              opts.dataDir,
		LongPollTimeout:      caddy.Duration(opts.longPollTimeout),
		SSEReconnectInterval: caddy.Duration(opts.sseReconnectInterval),
		// Development: webhooks to http://localhost and 127.0.0.x.
		WebhookAllowDev: true,
	}
	health := caddyhttp.StaticResponse{StatusCode: caddyhttp.WeakString("200"), Body: "OK"}
	notFound := caddyhttp.StaticResponse{StatusCode: caddyhttp.WeakString("404"), Body: "not found\n"}

	server := &caddyhttp.Server{
		Listen:    []string{opts.listen},
		AutoHTTPS: &caddyhttp.AutoHTTPSConfig{Disabled: true},
		// As Caddyfile.example: a client that trickles its request in is
		// cut off instead of holding a connection and its body forever.
		ReadHeaderTimeout: caddy.Duration(readHeaderTimeout),
		ReadTimeout:       caddy.Duration(readBodyTimeout),
		Routes: caddyhttp.RouteList{
			devRoute("/health", caddyconfig.JSONModuleObject(health, "handler", "static_response", nil)),
			devRoute(caddymodule.DefaultStreamRoot+"/*", caddyconfig.JSONModuleObject(streams, "handler", "durable_streams", nil)),
			// Anything else, including a path cleaned out of the stream
			// route (/v1/stream/../x), is not found, never an empty 200.
			{HandlersRaw: []json.RawMessage{caddyconfig.JSONModuleObject(notFound, "handler", "static_response", nil)}},
		},
	}
	httpApp := caddyhttp.App{Servers: map[string]*caddyhttp.Server{"dev": server}}

	persist := false
	return &caddy.Config{
		Admin: &caddy.AdminConfig{
			Disabled: true,
			Config:   &caddy.ConfigSettings{Persist: &persist},
		},
		AppsRaw: caddy.ModuleMap{"http": caddyconfig.JSON(httpApp, nil)},
	}, nil
}

func devRoute(path string, handler json.RawMessage) caddyhttp.Route {
	return caddyhttp.Route{
		MatcherSetsRaw: []caddy.ModuleMap{{"path": caddyconfig.JSON(caddyhttp.MatchPath{path}, nil)}},
		HandlersRaw:    []json.RawMessage{handler},
	}
}

func printBanner(opts devOptions) {
	storage := "in-memory (ephemeral)"
	if opts.dataDir != "" {
		storage = opts.dataDir
	}
	fmt.Printf(`
%s %s — development server
  URL:      %s
  Endpoint: %s/*
  Health:   /health
  Storage:  %s
Press Ctrl-C to stop.

`, binaryName, caddymodule.Version, devURL(opts.listen), caddymodule.DefaultStreamRoot, storage)
}

// devURL turns a listen address into the URL to print: ":4437" becomes
// "http://localhost:4437".
func devURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}
