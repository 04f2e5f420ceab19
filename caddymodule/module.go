// Package caddymodule is the Caddy HTTP handler `durable_streams`: it parses
// the configuration, opens a shared engine per data_dir when the config
// starts (the `durable_streams` app, app.go), copies each request into one
// engine call and writes back what the engine answers. It makes no protocol
// decision; package native and the C++ engine behind it decide every
// status, header and body.
package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
	// MaxInlineStreamSize bounds inline_stream_size: every commit rewrites
	// a stream's inline bytes whole.
	MaxInlineStreamSize = 64 << 10
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
// one engine, across sites and across config reloads. Storage opens when
// the config starts (the durable_streams app, app.go), never at Provision,
// so `validate` touches nothing. A reload applies the new config's
// long_poll_timeout, sse_reconnect_interval, max_append_size and retention
// to the running engine; fsync, fsync_interval, segment_size and (with
// data_dir) stream_root are fixed while it is open (a warning says so).
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

	// Whether a long-poll over plain HTTP/1.1 that must wait is handed,
	// connection and all, to the engine, which writes its whole answer (as
	// net/http would, with Connection: close) instead of a goroutine per
	// waiter. Only where every ResponseWriter wrapper passes the response
	// through unchanged; access logs then see status 0. Default: true.
	LongPollTakeover *bool `json:"long_poll_takeover,omitempty"`

	// Whether a read with a body of 1 MiB or more over plain HTTP/1.1 is
	// written on the connection directly (one writev or sendfile per piece
	// instead of net/http's 64 KiB writes), the connection then going back
	// to net/http for the next request. Only where every ResponseWriter
	// wrapper passes the response through unchanged; access logs then see
	// status 0 and no bytes. Default: true.
	DirectReads *bool `json:"direct_reads,omitempty"`

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

	// With data_dir: a new stream's first bytes, up to this many, are kept
	// in LMDB (committed with its record) instead of a segment file, so the
	// first append to a stream costs no directory or file. 0 keeps every
	// stream's bytes in segment files. Default: 1 KiB; at most 64 KiB.
	InlineStreamSize *int64 `json:"inline_stream_size,omitempty"`

	// The URL path prefix under which streams live, as clients see it after
	// any rewrite. The protocol's reserved `__ds` namespace is below it.
	// Default: /v1/stream.
	StreamRoot string `json:"stream_root,omitempty"`

	// Rate limits per client address and placement group (429), and live
	// reads per client address. Off unless set. See RateLimits.
	RateLimit *RateLimits `json:"rate_limit,omitempty"`

	// Stream-scoped bearer tokens (401/403). Off unless set. See TokenAuth.
	Tokens *TokenAuth `json:"tokens,omitempty"`

	// In memory (no data_dir): the most stream bytes the engine holds;
	// appends and creates whose bytes would go past it answer 507, reads and
	// deletes go on, and expiry and retention free room. -1 turns it off.
	// Default: half the memory this process may use (its cgroup v2
	// memory.max if set, else MemTotal), none if neither is known.
	MaxMemoryBytes int64 `json:"max_memory_bytes,omitempty"`

	// Streams and bytes per placement group (507, or 403 for a body that
	// can never fit). Off unless set. See Quotas.
	Quota *Quotas `json:"quota,omitempty"`

	// WebhookAllowDev is the development switch for webhook subscriptions
	// (PROTOCOL.md §6.2, §12.8): it allows http:// and https:// URLs to
	// localhost and 127.0.0.x, and dialing loopback. Off by default; the
	// `dev` command turns it on. Never on in production.
	WebhookAllowDev bool `json:"webhook_allow_dev,omitempty"`

	limits   *rateLimiter   // RateLimit in force; nil: no limits
	tokens   *tokenVerifier // Tokens in force; nil: no token needed
	engine   engine
	subs     *subscriptionRuntime // the engine's webhook keys and sender
	bodies   *bodyBudget          // request bytes in flight, bounded by MaxInflightBodyBytes
	opts     native.Options       // what Provision resolved; the engine opens with them
	poolKey  string               // set once the pool handed us an engine
	lease    *engineLease         // this handler's share of it, held by its requests too
	ready    *stopSignal          // closed once engine is set (or will never be); nil: set already
	stopping *stopSignal          // closed when this config stops
	owner    uint64               // tags the SSE sessions this handler handed to the engine
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

// Provision fills in defaults, checks the options (and that data_dir is
// usable by this process's user, creating nothing) and registers the
// handler with the durable_streams app, which opens the engine when the
// config starts.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.stopping = newStopSignal()
	h.owner = handlerOwners.Add(1)
	h.ready = newStopSignal()
	h.applyDefaults()
	if err := h.Validate(); err != nil {
		return err
	}
	h.bodies = newBodyBudget(h.MaxInflightBodyBytes)
	h.limits = newRateLimiter(h.RateLimit, monotonic)
	tokens, err := newTokenVerifier(h.Tokens)
	if err != nil {
		return err
	}
	h.tokens = tokens
	if tokens != nil {
		tokensInUse.Store(true)
	}
	opts, err := h.engineOptions()
	if err != nil {
		return err
	}
	if opts.DataDir != "" {
		if err := checkDataDir(opts.DataDir); err != nil {
			return err
		}
	}
	h.opts = opts

	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if err := h.endLiveRequestsOnStop(ctx); err != nil {
		return err
	}
	app, err := ctx.App(appName)
	if err != nil {
		return err
	}
	app.(*App).register(h)
	return nil
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
		if h.DataDir == "" && h.MaxMemoryBytes == 0 {
			// Streams take half the memory by default: bodies get less.
			h.MaxInflightBodyBytes = defaultInflightBodyBytes(systemFiles, h.MaxAppendSize)
		}
	}
	if h.StreamRoot == "" {
		h.StreamRoot = DefaultStreamRoot
	}
	// One notion of placement group: rate limits follow quota's depth.
	if h.RateLimit != nil && h.RateLimit.GroupDepth == 0 && h.Quota != nil {
		h.RateLimit.GroupDepth = h.Quota.GroupDepth
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

// stop ends this handler's live requests: those a goroutine serves end at
// once (SSE on a final control event, long-polls as on their timeout), so
// their clients resume at once, from whatever config comes next. The SSE
// sessions it handed to the engine keep streaming when the engine outlives
// this config (a reload that keeps the storage: the next config's handler
// shares it); otherwise they end as at their reconnect interval.
func (h *Handler) stop() {
	h.stopping.stop()
	if h.engine != nil && !h.engineOutlivesConfig() {
		h.engine.EndAdopted(h.owner)
	}
}

// engineOutlivesConfig says another handler (of the next config) holds
// this handler's engine too.
func (h *Handler) engineOutlivesConfig() bool {
	if h.poolKey == "" {
		return false
	}
	n, _ := engines.References(h.poolKey)
	return n > 1
}

// engineOptions turns the handler's options into the engine's, with
// data_dir absolute and its symlinks resolved.
func (h *Handler) engineOptions() (native.Options, error) {
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
		InlineStreamBytes:    h.inlineStreamBytes(),
		MaxMemoryBytes:       h.memoryBudget(systemFiles),
		GroupDepth:           h.groupDepth(),
	}
	if h.Quota != nil {
		opts.MaxStreamsPerGroup, opts.MaxBytesPerGroup = h.Quota.MaxStreamsPerGroup, h.Quota.MaxBytesPerGroup
	}
	if h.DataDir != "" {
		dir, err := filepath.Abs(h.DataDir)
		if err != nil {
			return opts, fmt.Errorf("data_dir %q: %w", h.DataDir, err)
		}
		// One directory reached through a symlink is still one engine: a
		// reload that names it differently must share, not lock itself out.
		if resolved, err := filepath.EvalSymlinks(dir); err == nil {
			dir = resolved
		}
		opts.DataDir = dir
	}
	return opts, nil
}

// open takes the handler's engine from the pool, opening it if no handler
// holds it yet. An engine already open (the previous config's, on reload)
// takes this handler's tunable options, unless first, a handler of the
// same config, already set them.
func (h *Handler) open(first *Handler) error {
	key := poolKey(h.opts)
	shared, loaded, err := loadEngine(key, h.opts)
	if err != nil {
		return fmt.Errorf("opening durable streams engine (%s): %w", key, err)
	}
	h.poolKey = key
	h.lease = newEngineLease(key)
	h.engine = nativeEngine{shared.Engine}
	h.subs = shared.subs
	h.subs.allowDev.Store(h.WebhookAllowDev)
	if loaded {
		if err := h.adopt(shared, first); err != nil {
			return err
		}
	}
	h.markReady() // only now: requests see the new options from the start
	h.logger.Info("durable streams engine ready",
		zap.String("storage", key),
		zap.Bool("shared", loaded),
		zap.String("engine_version", native.Version()))
	return nil
}

// adopt brings an engine that was already open in line with this
// handler's options, as far as a running engine can follow.
func (h *Handler) adopt(shared *sharedEngine, first *Handler) error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	key := h.poolKey
	if first != nil {
		if first.opts != h.opts {
			h.logger.Warn("handlers of one config share this storage with different options; the first one's apply",
				zap.String("storage", key), zap.Any("in_force", shared.opts), zap.Any("configured", h.opts))
		}
		return nil
	}
	if want := h.opts.Tunables(); shared.opts.Tunables() != want {
		if err := shared.SetTunables(want); err != nil {
			return fmt.Errorf("applying the new options to the open engine (%s): %w", key, err)
		}
		h.logger.Info("durable streams engine options changed",
			zap.String("storage", key), zap.Any("before", shared.opts.Tunables()), zap.Any("now", want))
		shared.opts.LongPollTimeout, shared.opts.SSEReconnectInterval = want.LongPollTimeout, want.SSEReconnectInterval
		shared.opts.MaxAppendBytes = want.MaxAppendBytes
		shared.opts.RetentionAge, shared.opts.RetentionBytes = want.RetentionAge, want.RetentionBytes
		shared.opts.MaxMemoryBytes = want.MaxMemoryBytes
		shared.opts.MaxStreamsPerGroup, shared.opts.MaxBytesPerGroup = want.MaxStreamsPerGroup, want.MaxBytesPerGroup
	}
	if shared.opts != h.opts {
		h.logger.Warn("the open engine keeps its fsync, fsync_interval, segment_size, stream_root and group_depth until the server restarts",
			zap.String("storage", key), zap.Any("in_force", shared.opts), zap.Any("configured", h.opts))
	}
	return nil
}

// markReady lets requests waiting for the engine go on.
func (h *Handler) markReady() {
	h.ready.stop()
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
	if h.InlineStreamSize != nil && (*h.InlineStreamSize < 0 || *h.InlineStreamSize > MaxInlineStreamSize) {
		return fmt.Errorf("inline_stream_size must be between 0 and %d bytes: %d", MaxInlineStreamSize, *h.InlineStreamSize)
	}
	if h.SegmentSize != 0 && h.SegmentSize < MinSegmentSize {
		return fmt.Errorf("segment_size must be at least %d bytes: %d", MinSegmentSize, h.SegmentSize)
	}
	if !strings.HasPrefix(h.StreamRoot, "/") {
		return fmt.Errorf("stream_root must start with '/': %q", h.StreamRoot)
	}
	if h.RateLimit != nil {
		if err := h.RateLimit.Validate(); err != nil {
			return err
		}
	}
	if h.Tokens != nil {
		if err := h.Tokens.Validate(); err != nil {
			return err
		}
	}
	return h.validateLimits()
}

// Cleanup ends this handler's open live requests and releases its share of
// the engine; the last handler to let go closes it, once its own last
// request is over (see engineLease).
func (h *Handler) Cleanup() error {
	h.stop()
	h.markReady() // requests still waiting for an engine that never opened: 503
	if h.lease == nil {
		return nil // the engine never opened
	}
	h.lease.done()
	return nil
}

// engineLease is a handler's use of a pooled engine, shared with the
// requests it is serving: the engine is given back to the pool when the
// handler is cleaned up and its last request has ended, whichever comes
// last. On reload Caddy cleans the old config up without waiting for its
// requests; when the new config uses another data_dir, the old engine must
// still serve them.
type engineLease struct {
	n       atomic.Int64 // the handler's own hold (1 until Cleanup) plus requests
	once    sync.Once
	poolKey string
}

func newEngineLease(poolKey string) *engineLease {
	l := &engineLease{poolKey: poolKey}
	l.n.Store(1)
	return l
}

// hold counts a request in; a nil lease (an engine not from the pool, as in
// tests) holds nothing.
func (l *engineLease) hold() {
	if l != nil {
		l.n.Add(1)
	}
}

// done counts a request (or the handler) out; the last one gives the engine
// back. A request that arrives after that finds the engine closed (503).
func (l *engineLease) done() {
	if l != nil && l.n.Add(-1) == 0 {
		l.release()
	}
}

func (l *engineLease) release() {
	l.once.Do(func() {
		if err := releaseEngine(l.poolKey); err != nil {
			caddy.Log().Error("releasing durable streams engine", zap.String("storage", l.poolKey), zap.Error(err))
		}
	})
}

// awaitEngine holds a request that arrives before the durable_streams app
// has opened the engine (Caddy may start the http app first) until it has.
// It returns false when the request cannot be served: the client left
// (nothing to write) or the engine will not open (503). When it returns
// true the request holds the engine (h.lease) until it calls h.lease.done.
func (h *Handler) awaitEngine(r *http.Request) (bool, error) {
	if h.ready != nil {
		select {
		case <-h.ready.done():
		default:
			select {
			case <-h.ready.done():
			case <-r.Context().Done():
				return false, nil
			}
		}
	}
	if h.engine == nil {
		return false, caddyhttp.Error(http.StatusServiceUnavailable, errors.New("durable streams engine is not open"))
	}
	h.lease.hold()
	return true, nil
}

// endStream ends a goroutine-served SSE response because its config stops:
// the engine sends what is pending and a final control event, so the
// client resumes at once from where it was. It returns whether the
// response can be completed (false: the client is gone).
func (h *Handler) endStream(session uint64, send func([]byte) error) bool {
	resp, err := h.engine.Resume(session, native.ResumeEnd)
	if err != nil {
		h.engine.Cancel(session)
		return true
	}
	defer resp.Release()
	if !resp.Done() {
		h.engine.Cancel(session)
	}
	return send(resp.Body()) == nil
}

// stopSignal is closed once: when the handler's config stops (live requests
// waiting on it end), or when its engine is ready.
type stopSignal struct {
	once sync.Once
	ch   chan struct{}

	mu        sync.Mutex
	stopped   bool
	onStop    []func() // run by stop, once
	longPolls bool     // endLongPollsOnStop registered
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
		s.once.Do(func() {
			close(s.ch)
			s.mu.Lock()
			s.stopped = true
			fns := s.onStop
			s.onStop = nil
			s.mu.Unlock()
			for _, f := range fns {
				f()
			}
		})
	}
}

// endLongPollsOnStop runs f when stop is called, or now if it has been;
// only the first call's f counts (takeover_longpoll.go).
func (s *stopSignal) endLongPollsOnStop(f func()) {
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.longPolls {
		s.mu.Unlock()
		return
	}
	s.longPolls = true
	if !s.stopped {
		s.onStop = append(s.onStop, f)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	f()
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

// inlineStreamBytes is inline_stream_size as the engine takes it: 0 for
// the default, negative for none.
func (h *Handler) inlineStreamBytes() int64 {
	switch {
	case h.InlineStreamSize == nil:
		return 0
	case *h.InlineStreamSize == 0:
		return -1
	default:
		return *h.InlineStreamSize
	}
}
