package caddymodule

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/cespare/xxhash/v2"
)

// Placement: every stream belongs to a placement group and a group lives on
// one node. The router (any Caddy with this module) sends each request to
// its group's node with the `durable_streams` selection policy of
// reverse_proxy: an explicit group → upstream table wins, every other group
// goes to its rendezvous (highest random weight) upstream among all the
// configured ones. A node that is down is not replaced: its groups get a
// fast 502/503 from the router rather than having their writes land on a
// node that does not hold their streams (two diverging copies).

func init() {
	caddy.RegisterModule(PlacementSelection{})
}

// Placement names the placement groups as quota and rate_limit do: the
// first group_depth path segments under stream_root, or, for placement
// only, the first submatch of group_regexp over the path under the root.
type Placement struct {
	// The stream root of the nodes (default /v1/stream).
	StreamRoot string `json:"stream_root,omitempty"`
	// Path segments under stream_root naming a group (default 1), the
	// same as the nodes' quota and rate_limit group_depth.
	GroupDepth int `json:"group_depth,omitempty"`
	// Optional: the group is the first submatch of this expression over
	// the path under stream_root (no leading slash); a path it does not
	// match falls back to group_depth. Quotas still count by group_depth.
	GroupRegexp string `json:"group_regexp,omitempty"`

	re *regexp.Regexp
}

func (p *Placement) provision() error {
	if p.StreamRoot == "" {
		p.StreamRoot = DefaultStreamRoot
	}
	if !strings.HasPrefix(p.StreamRoot, "/") {
		return fmt.Errorf("stream_root must start with '/': %q", p.StreamRoot)
	}
	if p.StreamRoot != "/" {
		p.StreamRoot = strings.TrimSuffix(p.StreamRoot, "/")
	}
	if p.GroupDepth < 0 {
		return fmt.Errorf("group_depth must not be negative: %d", p.GroupDepth)
	}
	if p.GroupDepth == 0 {
		p.GroupDepth = 1
	}
	if p.GroupRegexp != "" {
		re, err := regexp.Compile(p.GroupRegexp)
		if err != nil {
			return fmt.Errorf("group_regexp: %w", err)
		}
		if re.NumSubexp() < 1 {
			return fmt.Errorf("group_regexp needs one submatch, the group: %q", p.GroupRegexp)
		}
		p.re = re
	}
	return nil
}

// underRoot tells whether path is a stream path (or the root itself).
func (p *Placement) underRoot(path string) bool {
	if p.StreamRoot == "/" {
		return true
	}
	return path == p.StreamRoot || strings.HasPrefix(path, p.StreamRoot+"/")
}

// reservedSegment is the first stream-root-relative segment of the
// protocol's control APIs (PROTOCOL.md §6-7).
const reservedSegment = "__ds"

// Group is the placement group of a stream path. A subscription's control
// paths (__ds/subscriptions/<id>/...) belong to the group its id names
// before its first '.' ("tenant-7.billing" lives with group "tenant-7"), so
// that it sits on the node holding that group's streams; other __ds paths
// (the JWKS) are group "__ds".
func (p *Placement) Group(path string) string {
	rel := relativePath(p.StreamRoot, path)
	if rel == reservedSegment || strings.HasPrefix(rel, reservedSegment+"/") {
		rest := strings.TrimPrefix(strings.TrimPrefix(rel, reservedSegment), "/")
		id, ok := strings.CutPrefix(rest, "subscriptions/")
		if !ok {
			return reservedSegment
		}
		id, _, _ = strings.Cut(id, "/")
		parts := strings.SplitN(id, ".", p.GroupDepth+1)
		if len(parts) > p.GroupDepth {
			parts = parts[:p.GroupDepth]
		}
		return strings.Join(parts, "/")
	}
	if p.re != nil {
		if m := p.re.FindStringSubmatch(rel); m != nil {
			return m[1]
		}
	}
	return placementGroup(p.StreamRoot, path, p.GroupDepth)
}

// PlacementSelection is reverse_proxy's `lb_policy durable_streams`.
//
//	lb_policy durable_streams {
//	    stream_root  /v1/stream
//	    group_depth  1
//	    group_regexp <expr>
//	    pin          <group> <upstream>   # repeatable
//	    pins_file    <path>               # lines "<group> <upstream>"
//	}
//
// Upstreams are named as in `to` (host:port). Pins from pins_file are read
// when the configuration loads (a reload reads them again); inline pins win
// over the file's.
type PlacementSelection struct {
	Placement
	// Explicit placements, group → upstream dial address.
	Pins map[string]string `json:"pins,omitempty"`
	// A file of "<group> <upstream>" lines ('#' starts a comment).
	PinsFile string `json:"pins_file,omitempty"`

	pins map[string]string
}

// CaddyModule returns the Caddy module information.
func (PlacementSelection) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.selection_policies.durable_streams",
		New: func() caddy.Module { return new(PlacementSelection) },
	}
}

// Provision reads the pins file and checks the options.
func (s *PlacementSelection) Provision(caddy.Context) error {
	if err := s.Placement.provision(); err != nil {
		return fmt.Errorf("lb_policy durable_streams: %w", err)
	}
	s.pins = map[string]string{}
	if s.PinsFile != "" {
		file, err := readPinsFile(s.PinsFile)
		if err != nil {
			return fmt.Errorf("lb_policy durable_streams: %w", err)
		}
		s.pins = file
	}
	for g, up := range s.Pins {
		s.pins[g] = up
	}
	return nil
}

// readPinsFile parses "<group> <upstream>" lines.
func readPinsFile(name string) (map[string]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("pins_file: %w", err)
	}
	defer f.Close()
	pins := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("pins_file %s:%d: want \"<group> <upstream>\", got %q", name, n, sc.Text())
		}
		pins[fields[0]] = fields[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("pins_file %s: %w", name, err)
	}
	return pins, nil
}

// Select returns the node of the request's group, or nil (the router
// answers 502/503 at once) when that node is unavailable: the group is never
// sent to another node. Requests outside the stream root (say /health) go
// to the first available upstream in rendezvous order of their path.
func (s *PlacementSelection) Select(pool reverseproxy.UpstreamPool, r *http.Request, _ http.ResponseWriter) *reverseproxy.Upstream {
	if !s.underRoot(r.URL.Path) {
		return rendezvous(pool, r.URL.Path, true)
	}
	up := s.Owner(pool, s.Group(r.URL.Path))
	if up == nil || !up.Available() {
		return nil
	}
	return up
}

// Owner is the upstream that holds group: its pin if it has one (nil if the
// pinned upstream is not in the pool), else its rendezvous upstream among
// every upstream of the pool, available or not.
func (s *PlacementSelection) Owner(pool reverseproxy.UpstreamPool, group string) *reverseproxy.Upstream {
	if dial, ok := s.pins[group]; ok {
		for _, up := range pool {
			if up.Dial == dial {
				return up
			}
		}
		return nil
	}
	return rendezvous(pool, group, false)
}

// rendezvous picks the upstream with the highest hash of (upstream, key);
// with onlyAvailable, among the available ones.
func rendezvous(pool reverseproxy.UpstreamPool, key string, onlyAvailable bool) *reverseproxy.Upstream {
	var best *reverseproxy.Upstream
	var bestScore uint64
	for _, up := range pool {
		if onlyAvailable && !up.Available() {
			continue
		}
		h := xxhash.New()
		_, _ = h.WriteString(up.Dial)
		_, _ = h.WriteString("\x00")
		_, _ = h.WriteString(key)
		if score := h.Sum64(); best == nil || score > bestScore {
			best, bestScore = up, score
		}
	}
	return best
}

// UnmarshalCaddyfile sets up the policy from Caddyfile tokens.
func (s *PlacementSelection) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the policy name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		if err := s.Placement.unmarshalOption(d); err == nil {
			continue
		} else if err != errUnknownOption {
			return err
		}
		switch d.Val() {
		case "pin":
			var group, up string
			if !d.Args(&group, &up) || d.NextArg() {
				return d.ArgErr()
			}
			if s.Pins == nil {
				s.Pins = map[string]string{}
			}
			s.Pins[group] = up
		case "pins_file":
			if !d.Args(&s.PinsFile) || d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("lb_policy durable_streams: unknown option %q", d.Val())
		}
	}
	return nil
}

var errUnknownOption = fmt.Errorf("unknown option")

// unmarshalOption parses one of the group definition's options.
func (p *Placement) unmarshalOption(d *caddyfile.Dispenser) error {
	switch d.Val() {
	case "stream_root":
		if !d.Args(&p.StreamRoot) || d.NextArg() {
			return d.ArgErr()
		}
	case "group_depth":
		var v string
		if !d.Args(&v) || d.NextArg() {
			return d.ArgErr()
		}
		n, err := parsePositiveInt(v)
		if err != nil {
			return d.Errf("group_depth: %v", err)
		}
		p.GroupDepth = n
	case "group_regexp":
		if !d.Args(&p.GroupRegexp) || d.NextArg() {
			return d.ArgErr()
		}
	default:
		return errUnknownOption
	}
	return nil
}

func parsePositiveInt(v string) (int, error) {
	var n int
	if _, err := fmt.Sscanf(v, "%d", &n); err != nil || n < 1 || fmt.Sprint(n) != v {
		return 0, fmt.Errorf("want a positive integer, got %q", v)
	}
	return n, nil
}

// Interface guards
var (
	_ reverseproxy.Selector = (*PlacementSelection)(nil)
	_ caddy.Provisioner     = (*PlacementSelection)(nil)
	_ caddyfile.Unmarshaler = (*PlacementSelection)(nil)
)
