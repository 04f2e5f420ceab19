package caddymodule

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
)

// Caddy's lifecycle: every module of a config is provisioned (also by
// `validate`, which then throws the config away), and only a config that is
// run has its apps started. Storage therefore opens in an app's Start, never
// in a handler's Provision: `validate` and `adapt` create, open and lock
// nothing, and a reload provisions the new config while the old one still
// holds data_dir.
//
// App is that app, `durable_streams`. Each handler registers with it at
// Provision (through ctx.App, which adds the app to the config when it is
// not configured); its Start opens (or shares, through the pool) each
// handler's engine. Caddy starts apps in no set order, so a request that
// reaches a handler before its engine is open waits for it (handler.ready).

func init() {
	caddy.RegisterModule(App{})
}

// appName is the app's module ID.
const appName = "durable_streams"

// App opens the engines of the durable_streams handlers of one config when
// the config starts. It has no options of its own.
// Caddy provisions, then starts, a config from one goroutine: no lock.
type App struct {
	handlers []*Handler
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  appName,
		New: func() caddy.Module { return new(App) },
	}
}

func (a *App) register(h *Handler) {
	a.handlers = append(a.handlers, h)
}

// Start opens every registered handler's engine. On an error Caddy cancels
// the config, and each handler's Cleanup gives back what it opened.
func (a *App) Start() error {
	configured := map[string]*Handler{} // pool key -> first handler of this config
	for _, h := range a.handlers {
		first := configured[poolKey(h.opts)]
		if err := h.open(first); err != nil {
			return fmt.Errorf("durable_streams: %w", err)
		}
		if first == nil {
			configured[h.poolKey] = h
		}
	}
	return nil
}

// Stop does nothing: handlers end their live requests on the "stopping"
// event and release their engines at Cleanup.
func (a *App) Stop() error { return nil }

// Interface guards
var _ caddy.App = (*App)(nil)
