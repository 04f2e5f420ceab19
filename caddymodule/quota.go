package caddymodule

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/durable-streams-server/durable-streams-server/native"
)

// Quotas bound what one placement group of streams may hold, in memory and
// with data_dir: writes past them answer 507 Insufficient Storage, or 403
// Forbidden when one body alone is larger than max_bytes_per_group (it can
// never succeed). A stream counts its own bytes (a fork's from its fork
// offset) until it is deleted or expires, or retention drops them; a
// deleted stream that forks still read counts until its last fork goes.
type Quotas struct {
	// Streams per group. Zero: no limit.
	MaxStreamsPerGroup int64 `json:"max_streams_per_group,omitempty"`
	// Bytes per group. Zero: no limit.
	MaxBytesPerGroup int64 `json:"max_bytes_per_group,omitempty"`
	// How many path segments under stream_root name a group, as
	// rate_limit's group_depth (the two must agree when both are set).
	// Default: 1.
	GroupDepth int `json:"group_depth,omitempty"`
}

// Validate checks the quotas.
func (q *Quotas) Validate() error {
	if q.MaxStreamsPerGroup < 0 {
		return fmt.Errorf("quota max_streams_per_group must not be negative: %d", q.MaxStreamsPerGroup)
	}
	if q.MaxBytesPerGroup < 0 {
		return fmt.Errorf("quota max_bytes_per_group must not be negative: %d", q.MaxBytesPerGroup)
	}
	if q.GroupDepth < 0 {
		return fmt.Errorf("quota group_depth must not be negative: %d", q.GroupDepth)
	}
	return nil
}

// groupDepth is the handler's one placement group depth: quota's or
// rate_limit's, whichever is set (Validate makes them agree), else 1.
func (h *Handler) groupDepth() int {
	if h.Quota != nil && h.Quota.GroupDepth > 0 {
		return h.Quota.GroupDepth
	}
	if h.RateLimit != nil && h.RateLimit.GroupDepth > 0 {
		return h.RateLimit.GroupDepth
	}
	return 1
}

// validateLimits checks max_memory_bytes, the quotas, and that quota and
// rate_limit agree on what a group is.
func (h *Handler) validateLimits() error {
	if h.MaxMemoryBytes < -1 {
		return fmt.Errorf("max_memory_bytes must be a size, or -1 (off): %d", h.MaxMemoryBytes)
	}
	if h.Quota == nil {
		return nil
	}
	if err := h.Quota.Validate(); err != nil {
		return err
	}
	if h.RateLimit != nil && h.Quota.GroupDepth > 0 && h.RateLimit.GroupDepth > 0 &&
		h.Quota.GroupDepth != h.RateLimit.GroupDepth {
		return fmt.Errorf("quota group_depth (%d) and rate_limit group_depth (%d) must agree: they name the same placement groups",
			h.Quota.GroupDepth, h.RateLimit.GroupDepth)
	}
	return nil
}

// DefaultMemoryShare is the share of the memory available to the process
// (its cgroup's memory.max if set, else the machine's MemTotal) that
// streams may hold in memory mode unless max_memory_bytes says otherwise.
const DefaultMemoryShare = 0.5

// readFile reads a system file; tests replace it with fakes.
type readFile func(name string) ([]byte, error)

// defaultMemoryBudget is DefaultMemoryShare of the memory this process may
// use: the cgroup v2 memory.max of its own cgroup if it has one, else
// MemTotal from /proc/meminfo, the smaller of the two when both are known.
// Zero (no budget) when neither can be read, as on systems without /proc.
func defaultMemoryBudget(read readFile) int64 {
	return int64(float64(processMemoryLimit(read)) * DefaultMemoryShare)
}

// processMemoryLimit is the memory this process may use: its cgroup's
// limit or MemTotal, whichever is smaller; 0 if neither is known.
func processMemoryLimit(read readFile) int64 {
	limit := memTotal(read)
	if c := cgroupMemoryMax(read); c > 0 && (limit == 0 || c < limit) {
		limit = c
	}
	return limit
}

// inflightShare is the share of the process's memory that in-memory
// handlers let request bodies take by default (max_inflight_body_bytes),
// when that is less than DefaultMaxInflightBodyBytes: the streams'
// default half plus bodies being read, and the garbage collector's slack
// on them, must stay below the limit (measured: with 256 MiB of bodies and
// 256 MiB of streams, a 512 MiB cgroup killed the process).
const inflightShare = 8

// defaultInflightBodyBytes is max_inflight_body_bytes's default in memory
// mode: DefaultMaxInflightBodyBytes, but no more than 1/inflightShare of
// the process's memory, and never less than max_append_size.
func defaultInflightBodyBytes(read readFile, maxAppend int64) int64 {
	n := int64(DefaultMaxInflightBodyBytes)
	if limit := processMemoryLimit(read); limit > 0 {
		n = min(n, limit/inflightShare)
	}
	return max(n, maxAppend)
}

// memTotal is MemTotal from /proc/meminfo in bytes, or 0.
func memTotal(read readFile) int64 {
	data, err := read("/proc/meminfo")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kib, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil || kib <= 0 || kib > math.MaxInt64/1024 {
				return 0
			}
			return kib * 1024
		}
	}
	return 0
}

// cgroupMemoryMax is the memory limit of this process's cgroup, or 0 if it
// has none: cgroup v2's memory.max ("0::<path>" in /proc/self/cgroup, under
// /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid systems), else cgroup
// v1's memory.limit_in_bytes ("N:memory:<path>", under
// /sys/fs/cgroup/memory). In a container with its own cgroup namespace
// the path may not exist as written: the mount's root file is tried too.
// v1's "unlimited" is a huge number, which MemTotal then undercuts.
func cgroupMemoryMax(read readFile) int64 {
	data, err := read("/proc/self/cgroup")
	if err != nil {
		return 0
	}
	var candidates []string
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		rel := path.Clean("/" + parts[2])
		switch {
		case parts[0] == "0" && parts[1] == "":
			candidates = append(candidates,
				path.Join("/sys/fs/cgroup", rel, "memory.max"), "/sys/fs/cgroup/memory.max",
				path.Join("/sys/fs/cgroup/unified", rel, "memory.max"))
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			candidates = append(candidates,
				path.Join("/sys/fs/cgroup/memory", rel, "memory.limit_in_bytes"),
				"/sys/fs/cgroup/memory/memory.limit_in_bytes")
		}
	}
	for _, name := range candidates {
		raw, err := read(name)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(raw))
		if v == "max" {
			continue
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			return n // the first file found is this process's own cgroup
		}
	}
	return 0
}

// memoryBudget is the engine's max_memory_bytes: none with data_dir or
// when turned off (-1), the option when set, else the default share.
func (h *Handler) memoryBudget(read readFile) int64 {
	switch {
	case h.DataDir != "" || h.MaxMemoryBytes < 0:
		return 0
	case h.MaxMemoryBytes > 0:
		return h.MaxMemoryBytes
	}
	return defaultMemoryBudget(read)
}

// systemFiles reads the real files.
var systemFiles readFile = os.ReadFile

// ---- Caddyfile ----------------------------------------------------------

// parseMaxMemory reads `max_memory_bytes <size>|off`.
func parseMaxMemory(d *caddyfile.Dispenser, out *int64) error {
	var s string
	if !d.AllArgs(&s) {
		return d.ArgErr()
	}
	if s == "off" {
		*out = -1
		return nil
	}
	size, err := humanize.ParseBytes(s)
	if err != nil {
		return d.Errf("parsing max_memory_bytes: %v", err)
	}
	if size == 0 || size > math.MaxInt64-1 {
		return d.Errf("max_memory_bytes out of range: %s", s)
	}
	*out = int64(size)
	return nil
}

// parseQuotas reads the quota block:
//
//	quota {
//	    max_streams_per_group <n>
//	    max_bytes_per_group   <size>
//	    group_depth           <n>
//	}
func parseQuotas(d *caddyfile.Dispenser) (*Quotas, error) {
	q := new(Quotas)
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch option := d.Val(); option {
		case "max_streams_per_group", "group_depth":
			var s string
			if !d.AllArgs(&s) {
				return nil, d.ArgErr()
			}
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				return nil, d.Errf("%s must be a positive integer, not '%s'", option, s)
			}
			if option == "group_depth" {
				q.GroupDepth = n
			} else {
				q.MaxStreamsPerGroup = int64(n)
			}
		case "max_bytes_per_group":
			if err := parseSize(d, &q.MaxBytesPerGroup); err != nil {
				return nil, err
			}
		default:
			return nil, d.Errf("unrecognized quota option '%s'", option)
		}
	}
	return q, nil
}

// ---- Metrics ------------------------------------------------------------

// The engine's refusals, the rest of rejections_total's fixed reasons.
const (
	rejectMemoryBudget = "memory_budget"
	rejectQuotaStreams = "quota_streams"
	rejectQuotaBytes   = "quota_bytes"
)

const rejectionsHelp = "Requests refused, by reason: before reaching the engine rate_client, rate_group, bytes_client, bytes_group, live_sessions (429), token_missing, token_invalid (401), token_scope (403); by the engine (counted since it opened) memory_budget (507), quota_streams (507), quota_bytes (507, or 403 for a body larger than the quota)."

// rejections is rejections_total: the handler's own counters, plus the
// engine's refusals summed over every open engine at scrape time.
var rejections = rejectionsCollector{prometheus.NewDesc("caddy_durable_streams_rejections_total",
	rejectionsHelp, []string{"reason"}, nil)}

type rejectionsCollector struct{ engine *prometheus.Desc }

func (c rejectionsCollector) Describe(ch chan<- *prometheus.Desc) { rejectionsTotal.Describe(ch) }

func (c rejectionsCollector) Collect(ch chan<- prometheus.Metric) {
	rejectionsTotal.Collect(ch)
	var memory, streams, bytes uint64
	rangeEngines(func(_ string, e *native.Engine) {
		s := e.Stats()
		memory += s.RefusedMemoryBudget
		streams += s.RefusedQuotaStreams
		bytes += s.RefusedQuotaBytes
	})
	ch <- prometheus.MustNewConstMetric(c.engine, prometheus.CounterValue, float64(memory), rejectMemoryBudget)
	ch <- prometheus.MustNewConstMetric(c.engine, prometheus.CounterValue, float64(streams), rejectQuotaStreams)
	ch <- prometheus.MustNewConstMetric(c.engine, prometheus.CounterValue, float64(bytes), rejectQuotaBytes)
}
