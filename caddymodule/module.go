// Package caddymodule is the Caddy HTTP handler `durable_streams`: it parses
// the configuration, provisions a shared engine per data_dir, copies each
// request into one engine call and writes back what the engine answers. It
// makes no protocol decision; package native and the C++ engine behind it
// decide every status, header and body.
package caddymodule

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/durable-streams-server/durable-streams-server/native"
)

// Version is the durable-streams-server product version.
const Version = "v0.1.0"

// Defaults for the handler's options.
const (
	DefaultLongPollTimeout      = 30 * time.Second
	DefaultSSEReconnectInterval = 60 * time.Second
	DefaultMaxAppendSize        = 64 << 20
	DefaultStreamRoot           = "/v1/stream"
	// MinSegmentSize keeps segment files from becoming one file per append.
	MinSegmentSize = 64 << 10
	// DefaultMaxInflightBodyBytes is max_inflight_body_bytes unless
	// max_append_size is larger.
	DefaultMaxInflightBodyBytes = 256 << 20
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler serves the Durable Streams protocol: it creates, appends to, reads,
// tails (long-poll and SSE), closes and deletes streams. Route the stream
// URLs to it, e.g. `route /v1/stream/* { durable_streams }`.
//
// In a site block it is ordered right after encode; requests outside
// stream_root go on to the next handler, so it needs no matcher there.
//
// Handlers with the same data_dir (or, in memory, the same stream_root) share
// one engine, across sites and across config reloads; the engine's options are
// those of the first handler that opened it, until every handler using it is
// gone (a reload that changes only timeouts keeps the old ones; a warning is
// logged).
type Handler struct {
	// Directory for durable storage (LMDB metadata and stream segments).
	// Relative paths are resolved against the working directory. Empty keeps
	// streams in memory: they are lost when the process exits, but survive
	// config reloads.
	DataDir string `json:"data_dir,omitempty"`

	// When durable storage syncs appended bytes to disk, which decides what
	// an acknowledged append survives: "always" (the default: every
	// acknowledged append survives power loss), "interval" (synced every
	// fsync_interval: survives a process crash; power loss may lose the last
	// interval) or "off" (never synced: survives a process crash only).
	// Only meaningful with data_dir.
	Fsync string `json:"fsync,omitempty"`

	// With fsync "interval": how often to sync. Default: 1s.
	FsyncInterval caddy.Duration `json:"fsync_interval,omitempty"`

	// How long a long-poll read waits for new data before it is answered
	// with a timeout. Default: 30s.
	LongPollTimeout caddy.Duration `json:"long_poll_timeout,omitempty"`

	// How long an SSE connection stays open before the server closes it so
	// the client reconnects (which lets CDNs collapse requests). Default: 60s.
	SSEReconnectInterval caddy.Duration `json:"sse_reconnect_interval,omitempty"`

	// Whether an SSE response over plain HTTP/1.1 is handed, connection and
	// all, to the engine once its headers and first piece are out: a few
	// engine threads (one per CPU, at most four) then write every event to
	// every such connection, instead of a goroutine per connection. Bytes after the first piece
	// bypass response-writer middleware, and access logs see only the first
	// piece. TLS, HTTP/2 and HTTP/3 responses always stream from Go.
	// Default: true.
	SSETakeover *bool `json:"sse_takeover,omitempty"`

	// The largest request body, in bytes, that an append or create may
	// carry; larger bodies are answered 413 without being read. Default:
	// 64 MiB.
	MaxAppendSize int64 `json:"max_append_size,omitempty"`

	// The most bytes of append and create bodies this handler holds at
	// once, across all requests. A body that does not fit is not read: the
	// request is answered 503 with Retry-After (load shedding). A body with
	// a Content-Length counts its length; one without counts 64 KiB until
	// it outgrows that, then max_append_size until it is complete. Must be
	// at least max_append_size. Default: 256 MiB, or max_append_size if
	// that is larger.
	MaxInflightBodyBytes int64 `json:"max_inflight_body_bytes,omitempty"`

	// Retention: drop a stream's oldest data once it is older than
	// retention_age, or while the data after it still amounts to at least
	// retention_bytes (either or both; zero means no limit, the default).
	// Whole segments are dropped (see segment_size), never the one being
	// appended to, so a stream keeps up to one segment more than the limit.
	// Reads before the earliest kept offset answer 410 Gone; offset=-1 reads
	// from it. A stream that forks read from keeps its whole history.
	RetentionAge   caddy.Duration `json:"retention_age,omitempty"`
	RetentionBytes int64          `json:"retention_bytes,omitempty"`

	// With data_dir: the size at which a stream's segment file is closed
	// and the next one started; the unit of retention. Default: 64 MiB. In
	// memory, streams are kept in 1 MiB blocks whatever this says.
	SegmentSize int64 `json:"segment_size,omitempty"`

	// The URL path prefix under which streams live, as clients see it after
	// any rewrite. The protocol's reserved `__ds` namespace is below it.
	// Default: /v1/stream.
	StreamRoot string `json:"stream_root,omitempty"`

	engine   engine
	bodies   *bodyBudget // request bytes in flight, bounded by MaxInflightBodyBytes
	poolKey  string      // set once the pool handed us an engine
	stopping *stopSignal // closed when this config stops
	owner    uint64      // tags the SSE sessions this handler handed to the engine
	logger   *zap.Logger
}

// handlerOwners numbers handlers, so each ends only its own adopted sessions.
var handlerOwners atomic.Uint64

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.durable_streams",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision fills in defaults, registers metrics and opens (or shares) the
// engine.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.stopping = newStopSignal()
	h.owner = handlerOwners.Add(1)
	h.applyDefaults()
	if err := h.Validate(); err != nil {
		return err
	}
	h.bodies = newBodyBudget(h.MaxInflightBodyBytes)

	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if err := h.endLiveRequestsOnStop(ctx); err != nil {
		return err
	}
	return h.openEngine()
}

func (h *Handler) applyDefaults() {
	if h.LongPollTimeout == 0 {
		h.LongPollTimeout = caddy.Duration(DefaultLongPollTimeout)
	}
	if h.SSEReconnectInterval == 0 {
		h.SSEReconnectInterval = caddy.Duration(DefaultSSEReconnectInterval)
	}
	if h.MaxAppendSize == 0 {
		h.MaxAppendSize = DefaultMaxAppendSize
	}
	if h.MaxInflightBodyBytes == 0 {
		h.MaxInflightBodyBytes = max(DefaultMaxInflightBodyBytes, h.MaxAppendSize)
	}
	if h.StreamRoot == "" {
		h.StreamRoot = DefaultStreamRoot
	}
	if len(h.StreamRoot) > 1 {
		h.StreamRoot = strings.TrimRight(h.StreamRoot, "/")
	}
	h.DataDir = caddy.NewReplacer().ReplaceKnown(h.DataDir, "")
}

// endLiveRequestsOnStop ends open long-poll and SSE requests as soon as
// Caddy starts stopping this config (before it waits for the servers to
// drain), not only at Cleanup, so a reload or exit never waits for them.
func (h *Handler) endLiveRequestsOnStop(ctx caddy.Context) error {
	app, err := ctx.App("events")
	if err != nil {
		return err
	}
	return app.(*caddyevents.App).On("stopping", stoppingHandler(h.stop))
}

// stop ends this handler's live requests: those a goroutine serves, and the
// SSE sessions it handed to the engine (which end as at their reconnect
// interval, so their clients reconnect to whatever config comes next).
func (h *Handler) stop() {
	h.stopping.stop()
	if h.engine != nil {
		h.engine.EndAdopted(h.owner)
	}
}

func (h *Handler) openEngine() error {
	opts := native.Options{
		Fsync:                fsyncModes[h.Fsync],
		FsyncInterval:        time.Duration(h.FsyncInterval),
		StreamRoot:           h.StreamRoot,
		LongPollTimeout:      time.Duration(h.LongPollTimeout),
		SSEReconnectInterval: time.Duration(h.SSEReconnectInterval),
		MaxAppendBytes:       h.MaxAppendSize,
		RetentionAge:         time.Duration(h.RetentionAge),
		RetentionBytes:       h.RetentionBytes,
		SegmentBytes:         h.SegmentSize,
	}
	if h.DataDir != "" {
		dir, err := filepath.Abs(h.DataDir)
		if err != nil {
			return fmt.Errorf("data_dir %q: %w", h.DataDir, err)
		}
		// One directory reached through a symlink is still one engine: a
		// reload that names it differently must share, not lock itself out.
		if resolved, err := filepath.EvalSymlinks(dir); err == nil {
			dir = resolved
		}
		opts.DataDir = dir
	}
	key := poolKey(opts)
	shared, loaded, err := loadEngine(key, opts)
	if err != nil {
		return fmt.Errorf("opening durable streams engine (%s): %w", key, err)
	}
	h.poolKey = key
	h.engine = nativeEngine{shared.Engine}
	if loaded && shared.opts != opts {
		h.logger.Warn("engine already open with other options; the first handler's options stay in force until every handler using this storage is gone",
			zap.String("storage", key),
			zap.Any("in_force", shared.opts),
			zap.Any("configured", opts))
	}
	h.logger.Info("durable streams engine ready",
		zap.String("storage", key),
		zap.Bool("shared", loaded),
		zap.String("engine_version", native.Version()))
	return nil
}

// fsyncModes maps the fsync option to the engine's modes ("" is the default).
var fsyncModes = map[string]native.Fsync{
	"":         native.FsyncAlways,
	"always":   native.FsyncAlways,
	"interval": native.FsyncInterval,
	"off":      native.FsyncOff,
}

// Validate checks the configuration after Provision.
func (h *Handler) Validate() error {
	if h.LongPollTimeout < 0 {
		return fmt.Errorf("long_poll_timeout must not be negative: %v", time.Duration(h.LongPollTimeout))
	}
	if h.SSEReconnectInterval < 0 {
		return fmt.Errorf("sse_reconnect_interval must not be negative: %v", time.Duration(h.SSEReconnectInterval))
	}
	if h.MaxAppendSize < 0 {
		return fmt.Errorf("max_append_size must not be negative: %d", h.MaxAppendSize)
	}
	if h.MaxInflightBodyBytes < 0 {
		return fmt.Errorf("max_inflight_body_bytes must not be negative: %d", h.MaxInflightBodyBytes)
	}
	if h.MaxInflightBodyBytes != 0 && h.MaxInflightBodyBytes < h.MaxAppendSize {
		return fmt.Errorf("max_inflight_body_bytes (%d) must be at least max_append_size (%d), or no body of the largest size could be read",
			h.MaxInflightBodyBytes, h.MaxAppendSize)
	}
	if _, ok := fsyncModes[h.Fsync]; !ok {
		return fmt.Errorf("fsync must be always, interval or off: %q", h.Fsync)
	}
	if h.FsyncInterval < 0 {
		return fmt.Errorf("fsync_interval must not be negative: %v", time.Duration(h.FsyncInterval))
	}
	if h.RetentionAge < 0 {
		return fmt.Errorf("retention_age must not be negative: %v", time.Duration(h.RetentionAge))
	}
	if h.RetentionBytes < 0 {
		return fmt.Errorf("retention_bytes must not be negative: %d", h.RetentionBytes)
	}
	if h.SegmentSize != 0 && h.SegmentSize < MinSegmentSize {
		return fmt.Errorf("segment_size must be at least %d bytes: %d", MinSegmentSize, h.SegmentSize)
	}
	if !strings.HasPrefix(h.StreamRoot, "/") {
		return fmt.Errorf("stream_root must start with '/': %q", h.StreamRoot)
	}
	return nil
}

// Cleanup ends this handler's open live requests and releases its share of
// the engine; the last handler to let go closes it.
func (h *Handler) Cleanup() error {
	h.stop()
	if h.poolKey == "" {
		return nil // Provision failed before the pool handed us an engine
	}
	key := h.poolKey
	h.poolKey = ""
	return releaseEngine(key)
}

// stopSignal is closed once, when the handler's config stops; live requests
// waiting on it end.
type stopSignal struct {
	once sync.Once
	ch   chan struct{}
}

func newStopSignal() *stopSignal { return &stopSignal{ch: make(chan struct{})} }

// done is closed once stop was called; a nil stopSignal never stops.
func (s *stopSignal) done() <-chan struct{} {
	if s == nil {
		return nil
	}
	return s.ch
}

func (s *stopSignal) stop() {
	if s != nil {
		s.once.Do(func() { close(s.ch) })
	}
}

// stoppingHandler runs a function on Caddy's "stopping" event.
type stoppingHandler func()

func (f stoppingHandler) Handle(context.Context, caddy.Event) error {
	f()
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
