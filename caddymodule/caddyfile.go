package caddymodule

import (
	"math"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("durable_streams", parseCaddyfile)
	// Like mercure: after encode, so responses can be compressed, and before
	// handle/route/respond, so it also works directly in a site block.
	httpcaddyfile.RegisterDirectiveOrder("durable_streams", httpcaddyfile.After, "encode")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var ds Handler
	err := ds.UnmarshalCaddyfile(h.Dispenser)
	return &ds, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	durable_streams [<matcher>] {
//	    data_dir               <path>
//	    fsync                  always|off|interval [<duration>]
//	    long_poll_timeout      <duration>
//	    sse_reconnect_interval <duration>
//	    sse_takeover           on|off
//	    direct_reads           on|off
//	    max_append_size        <size>
//	    max_inflight_body_bytes <size>
//	    stream_root            <path>
//	    retention_age          <duration>
//	    retention_bytes        <size>
//	    segment_size           <size>
//	    inline_stream_size     <size>|0
//	    rate_limit { ... }     (ratelimit.go)
//	    tokens { ... }         (tokens.go)
//	    max_memory_bytes       <size>|off
//	    quota { ... }          (quota.go)
//	    webhook_allow_dev      on|off   (development only; subscriptions.go)
//	}
//
// Every option is optional; without a block, streams live in memory. Sizes
// are humanized like request_body's max_size (e.g. 10MB, 64MiB).
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch option := d.Val(); option {
		case "data_dir":
			if !d.AllArgs(&h.DataDir) {
				return d.ArgErr()
			}
		case "fsync":
			if err := h.parseFsync(d); err != nil {
				return err
			}
		case "stream_root":
			if !d.AllArgs(&h.StreamRoot) {
				return d.ArgErr()
			}
		case "long_poll_timeout":
			if err := parseDuration(d, &h.LongPollTimeout); err != nil {
				return err
			}
		case "sse_reconnect_interval":
			if err := parseDuration(d, &h.SSEReconnectInterval); err != nil {
				return err
			}
		case "sse_takeover":
			on, err := parseOnOff(d)
			if err != nil {
				return err
			}
			h.SSETakeover = &on
		case "webhook_allow_dev":
			on, err := parseOnOff(d)
			if err != nil {
				return err
			}
			h.WebhookAllowDev = on
		case "long_poll_takeover":
			on, err := parseOnOff(d)
			if err != nil {
				return err
			}
			h.LongPollTakeover = &on
		case "direct_reads":
			on, err := parseOnOff(d)
			if err != nil {
				return err
			}
			h.DirectReads = &on
		case "max_append_size":
			if err := parseSize(d, &h.MaxAppendSize); err != nil {
				return err
			}
		case "max_inflight_body_bytes":
			if err := parseSize(d, &h.MaxInflightBodyBytes); err != nil {
				return err
			}
		case "retention_age":
			if err := parseDuration(d, &h.RetentionAge); err != nil {
				return err
			}
		case "retention_bytes":
			if err := parseSize(d, &h.RetentionBytes); err != nil {
				return err
			}
		case "segment_size":
			if err := parseSize(d, &h.SegmentSize); err != nil {
				return err
			}
		case "inline_stream_size":
			// 0 (or off): every stream's bytes in segment files.
			var size int64
			if args := d.RemainingArgs(); len(args) == 1 && (args[0] == "0" || args[0] == "off") {
				size = 0
			} else if len(args) != 1 {
				return d.ArgErr()
			} else if v, err := humanize.ParseBytes(args[0]); err != nil || v > MaxInlineStreamSize {
				return d.Errf("inline_stream_size must be 0 (off) or a size up to %d bytes: %s", MaxInlineStreamSize, args[0])
			} else {
				size = int64(v)
			}
			h.InlineStreamSize = &size
		case "rate_limit":
			rl, err := parseRateLimits(d)
			if err != nil {
				return err
			}
			h.RateLimit = rl
		case "max_memory_bytes":
			if err := parseMaxMemory(d, &h.MaxMemoryBytes); err != nil {
				return err
			}
		case "quota":
			q, err := parseQuotas(d)
			if err != nil {
				return err
			}
			h.Quota = q
		case "tokens":
			t, err := parseTokenAuth(d)
			if err != nil {
				return err
			}
			h.Tokens = t
		default:
			return d.Errf("unrecognized durable_streams option '%s'", option)
		}
	}
	return nil
}

// parseFsync reads `fsync always|off|interval [<duration>]`.
func (h *Handler) parseFsync(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) == 0 || len(args) > 2 {
		return d.ArgErr()
	}
	mode := args[0]
	if _, ok := fsyncModes[mode]; !ok || mode == "" {
		return d.Errf("fsync must be always, interval or off, not '%s'", mode)
	}
	h.Fsync = mode
	if len(args) == 2 {
		if mode != "interval" {
			return d.Errf("only fsync interval takes a duration")
		}
		dur, err := caddy.ParseDuration(args[1])
		if err != nil {
			return d.Errf("parsing fsync interval: %v", err)
		}
		if dur <= 0 {
			return d.Errf("fsync interval must be positive: %s", args[1])
		}
		h.FsyncInterval = caddy.Duration(dur)
	}
	return nil
}

// parseDuration reads the option's one argument as a positive Caddy duration
// (e.g. 30s, 1m30s, 2d).
// parseOnOff reads the one argument of a switch option: on or off.
func parseOnOff(d *caddyfile.Dispenser) (bool, error) {
	option := d.Val()
	var v string
	if !d.AllArgs(&v) {
		return false, d.ArgErr()
	}
	switch v {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, d.Errf("%s must be on or off, not '%s'", option, v)
}

func parseDuration(d *caddyfile.Dispenser, out *caddy.Duration) error {
	option := d.Val()
	var s string
	if !d.AllArgs(&s) {
		return d.ArgErr()
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("parsing %s: %v", option, err)
	}
	if dur <= 0 {
		return d.Errf("%s must be positive: %s", option, s)
	}
	*out = caddy.Duration(dur)
	return nil
}

// parseSize reads the option's one argument as a positive humanized size
// (e.g. 10MB, 64MiB, 1GB).
func parseSize(d *caddyfile.Dispenser, out *int64) error {
	option := d.Val()
	var s string
	if !d.AllArgs(&s) {
		return d.ArgErr()
	}
	size, err := humanize.ParseBytes(s)
	if err != nil {
		return d.Errf("parsing %s: %v", option, err)
	}
	if size == 0 || size > math.MaxInt64-1 {
		return d.Errf("%s out of range: %s", option, s)
	}
	*out = int64(size)
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
