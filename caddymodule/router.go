package caddymodule

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Router is the `durable_streams_router` handler, placed before
// reverse_proxy on a router: a request that names another stream
// (Stream-Forked-From) must stay in its placement group, since the group's
// node is the only one that has the source. Across groups it answers 400
// itself instead of letting the fork's node answer 404 for a source it
// never held.
//
//	durable_streams_router {
//	    stream_root  /v1/stream
//	    group_depth  1
//	    group_regexp <expr>
//	}
//
// The options must be those of the router's `lb_policy durable_streams`.
type Router struct {
	Placement
}

func init() {
	caddy.RegisterModule(Router{})
	httpcaddyfile.RegisterHandlerDirective("durable_streams_router", parseRouterCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("durable_streams_router", httpcaddyfile.Before, "reverse_proxy")
}

// CaddyModule returns the Caddy module information.
func (Router) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.durable_streams_router",
		New: func() caddy.Module { return new(Router) },
	}
}

// Provision checks the options.
func (rt *Router) Provision(caddy.Context) error {
	if err := rt.Placement.provision(); err != nil {
		return fmt.Errorf("durable_streams_router: %w", err)
	}
	return nil
}

// ServeHTTP refuses forks across placement groups and passes everything
// else on.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	source := r.Header.Get("Stream-Forked-From")
	if source == "" || !rt.underRoot(r.URL.Path) {
		return next.ServeHTTP(w, r)
	}
	group := rt.Group(r.URL.Path)
	sourceGroup := ""
	if rt.underRoot(source) {
		sourceGroup = rt.Group(source)
	}
	if rt.underRoot(source) && sourceGroup == group {
		return next.ServeHTTP(w, r)
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusBadRequest)
	if r.Method != http.MethodHead {
		if sourceGroup == "" {
			_, _ = fmt.Fprintf(w, "bad request: Stream-Forked-From %q is not a stream under %s\n", source, rt.StreamRoot)
		} else {
			_, _ = fmt.Fprintf(w, "bad request: Stream-Forked-From names a stream of placement group %q, "+
				"this stream is in group %q; a fork must stay in its source's group\n", sourceGroup, group)
		}
	}
	return nil
}

func parseRouterCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var rt Router
	err := rt.UnmarshalCaddyfile(h.Dispenser)
	return &rt, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (rt *Router) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		if err := rt.Placement.unmarshalOption(d); err == errUnknownOption {
			return d.Errf("durable_streams_router: unknown option %q", d.Val())
		} else if err != nil {
			return err
		}
	}
	return nil
}

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*Router)(nil)
	_ caddy.Provisioner           = (*Router)(nil)
	_ caddyfile.Unmarshaler       = (*Router)(nil)
)
