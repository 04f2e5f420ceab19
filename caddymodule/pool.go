package caddymodule

import (
	"fmt"
	"sync"

	"github.com/caddyserver/caddy/v2"

	"github.com/durable-streams-server/durable-streams-server/native"
)

// engines holds one open engine per storage, shared by every handler that
// names the same storage. Caddy provisions a new config before it cleans up
// the old one, so during a reload two handlers use one engine; an LMDB
// environment must never be opened twice in one process.
var engines = caddy.NewUsagePool()

// sharedEngine is an engine in the pool, with the options in force: those it
// was opened with, the tunable ones as the last reload set them.
type sharedEngine struct {
	*native.Engine
	mu   sync.Mutex // guards opts
	opts native.Options
	subs *subscriptionRuntime // webhook keys and deliveries (subscriptions.go)
}

// Destruct closes the engine once no handler uses it.
func (s *sharedEngine) Destruct() error {
	s.subs.close()
	s.Engine.Close()
	return nil
}

// poolKey names a storage: the cleaned absolute data_dir, or, in memory,
// "memory:" plus the stream root (so a reload keeps in-memory streams).
func poolKey(opts native.Options) string {
	if opts.DataDir == "" {
		return memoryKeyPrefix + opts.StreamRoot
	}
	return opts.DataDir // already absolute and cleaned by filepath.Abs
}

// loadEngine returns the engine for key, opening it with opts if no handler
// holds it yet. Every successful call must be paired with releaseEngine(key).
func loadEngine(key string, opts native.Options) (*sharedEngine, bool, error) {
	v, loaded, err := engines.LoadOrNew(key, func() (caddy.Destructor, error) {
		// The webhook keys first: they hold the secret the engine signs
		// subscription tokens with.
		keys, err := openKeys(opts.DataDir)
		if err != nil {
			return nil, fmt.Errorf("webhook signing keys: %w", err)
		}
		open := opts // the secret stays out of the options compared on reload
		open.SubscriptionTokenSecret = string(keys.TokenSecret())
		e, err := native.Open(open)
		if err != nil {
			return nil, err
		}
		return &sharedEngine{Engine: e, opts: opts, subs: newSubscriptionRuntime(e, keys)}, nil
	})
	if err != nil {
		return nil, false, err
	}
	return v.(*sharedEngine), loaded, nil
}

// releaseEngine gives back one use of key; the last one closes the engine.
func releaseEngine(key string) error {
	_, err := engines.Delete(key)
	return err
}

// memoryKeyPrefix starts the pool key (and the metrics' storage label) of
// an in-memory engine; a durable engine's key is its data_dir.
const memoryKeyPrefix = "memory:"

// rangeEngines calls f for every open engine (for metrics).
func rangeEngines(f func(key string, e *native.Engine)) {
	engines.Range(func(k, v any) bool {
		f(k.(string), v.(*sharedEngine).Engine)
		return true
	})
}
