package caddymodule

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

// RateLimits bounds what one client address and one placement group may
// ask for (the `rate_limit` block). Every limit is off unless set. A request
// over a rate is answered 429 Too Many Requests with Retry-After (whole
// seconds until it would be let through) and a one-line reason; the engine
// never sees it.
type RateLimits struct {
	// Requests per client address (as Caddy determines it: the connection's
	// address, or X-Forwarded-For from the server's trusted_proxies).
	PerClient *RateSpec `json:"per_client,omitempty"`
	// Requests per placement group (see group_depth).
	PerGroup *RateSpec `json:"per_group,omitempty"`
	// Bytes of append and create bodies per client address and per group.
	// A body with a Content-Length is charged before it is read; one
	// without is charged once read (it is never refused, but the next
	// request waits until the debt is paid).
	AppendBytesPerClient *RateSpec `json:"append_bytes_per_client,omitempty"`
	AppendBytesPerGroup  *RateSpec `json:"append_bytes_per_group,omitempty"`

	// Live reads (long-poll and SSE) one client address may hold open at
	// once; the next one is answered 429. Live reads are still requests
	// for per_client and per_group. Setting it turns sse_takeover off, so
	// every SSE connection is counted until it ends.
	MaxLiveSessionsPerClient int `json:"max_live_sessions_per_client,omitempty"`

	// How many path segments under stream_root name a stream's placement
	// group: 1 (the default) makes /v1/stream/<group>/... one group.
	GroupDepth int `json:"group_depth,omitempty"`

	// The most client addresses (or groups) each limit keeps a bucket for.
	// Past it, buckets that have refilled are forgotten first, then random
	// ones (whose key starts over with a full bucket). About 100 bytes
	// each. Default: 65536.
	MaxTrackedKeys int `json:"max_tracked_keys,omitempty"`
}

// RateSpec is a rate: tokens (requests or bytes) per second, and the burst
// a full bucket allows (default: one second's worth, at least 1).
type RateSpec struct {
	PerSecond float64 `json:"per_second"`
	Burst     float64 `json:"burst,omitempty"`
}

func (s *RateSpec) rate() rate {
	burst := s.Burst
	if burst == 0 {
		burst = math.Max(1, s.PerSecond)
	}
	return rate{perSecond: s.PerSecond, burst: burst}
}

func (s *RateSpec) validate(name string) error {
	if s == nil {
		return nil
	}
	if !(s.PerSecond > 0) || math.IsInf(s.PerSecond, 0) {
		return fmt.Errorf("rate_limit %s: the rate must be positive: %v", name, s.PerSecond)
	}
	if s.Burst < 0 || math.IsInf(s.Burst, 0) || math.IsNaN(s.Burst) {
		return fmt.Errorf("rate_limit %s: burst must not be negative: %v", name, s.Burst)
	}
	return nil
}

// Validate checks the limits.
func (rl *RateLimits) Validate() error {
	for name, s := range map[string]*RateSpec{"per_client": rl.PerClient, "per_group": rl.PerGroup,
		"append_bytes_per_client": rl.AppendBytesPerClient, "append_bytes_per_group": rl.AppendBytesPerGroup} {
		if err := s.validate(name); err != nil {
			return err
		}
	}
	if rl.MaxLiveSessionsPerClient < 0 {
		return fmt.Errorf("rate_limit max_live_sessions_per_client must not be negative: %d", rl.MaxLiveSessionsPerClient)
	}
	if rl.GroupDepth < 0 {
		return fmt.Errorf("rate_limit group_depth must not be negative: %d", rl.GroupDepth)
	}
	if rl.MaxTrackedKeys < 0 {
		return fmt.Errorf("rate_limit max_tracked_keys must not be negative: %d", rl.MaxTrackedKeys)
	}
	return nil
}

// rateLimiter is RateLimits in force: nil parts are off.
type rateLimiter struct {
	client, group, clientBytes, groupBytes *limiter
	live                                   *sessionCounter
	groupDepth                             int
}

func newRateLimiter(rl *RateLimits, clock func() int64) *rateLimiter {
	if rl == nil {
		return nil
	}
	mk := func(s *RateSpec) *limiter {
		if s == nil {
			return nil
		}
		return newLimiter(s.rate(), rl.MaxTrackedKeys, clock)
	}
	l := &rateLimiter{
		client: mk(rl.PerClient), group: mk(rl.PerGroup),
		clientBytes: mk(rl.AppendBytesPerClient), groupBytes: mk(rl.AppendBytesPerGroup),
		groupDepth: max(1, rl.GroupDepth),
	}
	if rl.MaxLiveSessionsPerClient > 0 {
		l.live = newSessionCounter(rl.MaxLiveSessionsPerClient)
	}
	if l.client == nil && l.group == nil && l.clientBytes == nil && l.groupBytes == nil && l.live == nil {
		return nil
	}
	return l
}

// clientAddress is the client's IP as Caddy determined it (honouring the
// server's trusted_proxies), or the connection's.
func clientAddress(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// placementGroup is the first depth segments of path under root ("" for
// the root itself).
func placementGroup(root, path string, depth int) string {
	rel := relativePath(root, path)
	i := 0
	for n := 0; n < depth; n++ {
		j := strings.IndexByte(rel[i:], '/')
		if j < 0 {
			return rel
		}
		i += j + 1
	}
	return rel[:i-1]
}

// relativePath is path below root, without the leading slash.
func relativePath(root, path string) string {
	if root == "/" {
		return strings.TrimPrefix(path, "/")
	}
	rel := strings.TrimPrefix(path, root)
	return strings.TrimPrefix(rel, "/")
}

// isLiveRead tells whether r asks for a long-poll or SSE read.
func isLiveRead(r *http.Request) bool {
	if r.Method != http.MethodGet || !strings.Contains(r.URL.RawQuery, "live") && !strings.Contains(r.URL.RawQuery, "%") {
		return false
	}
	q, _ := url.ParseQuery(r.URL.RawQuery)
	v := q.Get("live")
	return v != "" && v != "false"
}

// denial is a request refused before the engine: what to answer.
type denial struct {
	status     int
	reason     rejectReason
	message    string
	retryAfter time.Duration
}

// admitBytes charges an append or create with a Content-Length to the
// bytes limits.
func (l *rateLimiter) admitBytes(r *http.Request, client, group string) *denial {
	if (r.Method != http.MethodPost && r.Method != http.MethodPut) || r.ContentLength <= 0 {
		return nil
	}
	n := float64(r.ContentLength)
	if l.clientBytes != nil {
		if ok, wait := l.clientBytes.take(client, n); !ok {
			return &denial{http.StatusTooManyRequests, rejectBytesClient, "too many appended bytes from this client address", wait}
		}
	}
	if l.groupBytes != nil {
		if ok, wait := l.groupBytes.take(group, n); !ok {
			return &denial{http.StatusTooManyRequests, rejectBytesGroup, "too many appended bytes to this group of streams", wait}
		}
	}
	return nil
}

// chargeBody charges a body read without a Content-Length, never refusing.
func (l *rateLimiter) chargeBody(client, group string, n int) {
	if n <= 0 {
		return
	}
	if l.clientBytes != nil {
		l.clientBytes.debit(client, float64(n))
	}
	if l.groupBytes != nil {
		l.groupBytes.debit(group, float64(n))
	}
}

// retryAfterSeconds rounds a wait up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	return strconv.FormatInt(max(1, s), 10)
}

// ---- Caddyfile ----------------------------------------------------------

// parseRateLimits reads the rate_limit block:
//
//	rate_limit {
//	    per_client              <n>/s|m|h [burst <n>]
//	    per_group               <n>/s|m|h [burst <n>]
//	    append_bytes_per_client <size>/s|m|h [burst <size>]
//	    append_bytes_per_group  <size>/s|m|h [burst <size>]
//	    max_live_sessions_per_client <n>
//	    group_depth             <n>
//	    max_tracked_keys        <n>
//	}
func parseRateLimits(d *caddyfile.Dispenser) (*RateLimits, error) {
	rl := new(RateLimits)
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		option := d.Val()
		switch option {
		case "per_client", "per_group", "append_bytes_per_client", "append_bytes_per_group":
			spec, err := parseRateSpec(d, strings.HasPrefix(option, "append_bytes"))
			if err != nil {
				return nil, err
			}
			switch option {
			case "per_client":
				rl.PerClient = spec
			case "per_group":
				rl.PerGroup = spec
			case "append_bytes_per_client":
				rl.AppendBytesPerClient = spec
			default:
				rl.AppendBytesPerGroup = spec
			}
		case "max_live_sessions_per_client", "group_depth", "max_tracked_keys":
			var s string
			if !d.AllArgs(&s) {
				return nil, d.ArgErr()
			}
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				return nil, d.Errf("%s must be a positive integer, not '%s'", option, s)
			}
			switch option {
			case "max_live_sessions_per_client":
				rl.MaxLiveSessionsPerClient = n
			case "group_depth":
				rl.GroupDepth = n
			default:
				rl.MaxTrackedKeys = n
			}
		default:
			return nil, d.Errf("unrecognized rate_limit option '%s'", option)
		}
	}
	return rl, nil
}

// parseRateSpec reads `<amount>/<unit> [burst <amount>]`; bytes amounts
// are humanized sizes (10MiB).
func parseRateSpec(d *caddyfile.Dispenser, bytes bool) (*RateSpec, error) {
	option := d.Val()
	args := d.RemainingArgs()
	if len(args) != 1 && len(args) != 3 {
		return nil, d.ArgErr()
	}
	amount, unit, ok := strings.Cut(args[0], "/")
	if !ok {
		return nil, d.Errf("%s: want <amount>/s, /m or /h, not '%s'", option, args[0])
	}
	per := map[string]float64{"s": 1, "m": 60, "h": 3600}[unit]
	if per == 0 {
		return nil, d.Errf("%s: the unit must be s, m or h, not '%s'", option, unit)
	}
	n, err := parseAmount(amount, bytes)
	if err != nil {
		return nil, d.Errf("%s: %v", option, err)
	}
	spec := &RateSpec{PerSecond: n / per}
	if len(args) == 3 {
		if args[1] != "burst" {
			return nil, d.Errf("%s: expected 'burst', not '%s'", option, args[1])
		}
		if spec.Burst, err = parseAmount(args[2], bytes); err != nil {
			return nil, d.Errf("%s burst: %v", option, err)
		}
	}
	return spec, nil
}

func parseAmount(s string, bytes bool) (float64, error) {
	if bytes {
		n, err := humanize.ParseBytes(s)
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, fmt.Errorf("must be positive: %s", s)
		}
		return float64(n), nil
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || !(n > 0) || math.IsInf(n, 0) {
		return 0, fmt.Errorf("must be a positive number: %s", s)
	}
	return n, nil
}
