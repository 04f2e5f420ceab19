package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/durable-streams-server/durable-streams-server/native"
)

// The module's metrics are package-level so their values survive config
// reloads; each config's registry gets them registered once.
var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "durable_streams",
		Name:      "requests_total",
		Help:      `Requests handled, by method and the status written (code "0": the client went away before a status was written).`,
	}, []string{"method", "code"})

	// Read bodies written on the connection directly (direct_read.go).
	directReads = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "durable_streams",
		Name:      "direct_reads_total",
		Help:      "Read responses of 1 MiB or more written on the connection directly (direct_reads) rather than through net/http.",
	})

	// Live reads a goroutine serves; SSE sessions an engine took over are
	// added at scrape time (liveCollector).
	liveLongPolls, liveStreams atomic.Int64
	liveSessions               = liveCollector{prometheus.NewDesc("caddy_durable_streams_live_sessions",
		"Live reads in progress (long-poll waits and SSE connections, including those the engine took over).",
		[]string{"mode"}, nil)}

	engineStats = engineCollector{
		streams: prometheus.NewDesc("caddy_durable_streams_streams",
			"Live streams (not expired, not deleted), by storage.", []string{"storage"}, nil),
		parked: prometheus.NewDesc("caddy_durable_streams_parked_sessions",
			"Sessions the engine has parked (long-poll and SSE, adopted ones included), by storage.", []string{"storage"}, nil),
		adopted: prometheus.NewDesc("caddy_durable_streams_adopted_sessions",
			"Live sessions whose connection the engine took over (sse_takeover, long_poll_takeover), by storage.", []string{"storage"}, nil),
		appends: prometheus.NewDesc("caddy_durable_streams_appends_total",
			"Successful appends since the engine opened, by storage.", []string{"storage"}, nil),
		appendedBytes: prometheus.NewDesc("caddy_durable_streams_appended_bytes_total",
			"Bytes appended since the engine opened, by storage.", []string{"storage"}, nil),
		commits: prometheus.NewDesc("caddy_durable_streams_commit_duration_seconds",
			"Group commits to a data_dir (one LMDB transaction each and, under fsync always, its flushes) and the time they took, by storage.",
			[]string{"storage"}, nil),
		committedWrites: prometheus.NewDesc("caddy_durable_streams_committed_writes_total",
			"Writes (appends, creates, deletes, ...) the group commits to a data_dir carried, by storage; divided by the commit count, the mean batch.",
			[]string{"storage"}, nil),
		commitFlushes: prometheus.NewDesc("caddy_durable_streams_commit_flushes_total",
			"Flushes the group commits to a data_dir ran (a commit or a sync of the store; under fsync always one device flush each), by storage.",
			[]string{"storage"}, nil),
		flushesWaited: prometheus.NewDesc("caddy_durable_streams_commit_flushes_waited_total",
			"Summed over the writes a data_dir acknowledged, the flushes each waited for between being queued for commit and its acknowledgement, by storage; divided by committed_writes, the flushes a write waits for (under fsync always about 2.7 with back-to-back commits: the rest of the commit running when it queues, its own, and the next, which makes its commit's meta page durable).",
			[]string{"storage"}, nil),
		storageState: prometheus.NewDesc("caddy_durable_streams_storage_state",
			"Storage health of a data_dir: 0 fine; 1 full (the last commit failed for lack of space: writes answer 507 until one succeeds, DELETE, expiry and retention go on); 2 failed (a storage I/O error, such as a failed fsync, stopped writes until restart).",
			[]string{"storage"}, nil),
		storageErrors: prometheus.NewDesc("caddy_durable_streams_storage_errors_total",
			`Requests answered with a storage error since the engine opened, by storage and reason ("no_space": 507, "io_error": 500).`,
			[]string{"storage", "reason"}, nil),
		checksumFailures: prometheus.NewDesc("caddy_durable_streams_checksum_failures_total",
			"Reads refused with 500 because bytes in a data_dir did not match their checksum, by storage (the log names stream and range).",
			[]string{"storage"}, nil),
		streamBytes: prometheus.NewDesc("caddy_durable_streams_stream_bytes",
			"Stream data held (each stream's own bytes: a fork's from its fork offset), by storage; in memory, what max_memory_bytes bounds.",
			[]string{"storage"}, nil),
		groupBytes: prometheus.NewDesc("caddy_durable_streams_group_bytes",
			fmt.Sprintf("Stream data held by the %d placement groups holding the most, by storage and group (the others: other_groups_bytes).", topGroups),
			[]string{"storage", "group"}, nil),
		groupStreams: prometheus.NewDesc("caddy_durable_streams_group_streams",
			fmt.Sprintf("Streams of the %d placement groups holding the most bytes, by storage and group (the others: other_groups_streams).", topGroups),
			[]string{"storage", "group"}, nil),
		otherBytes: prometheus.NewDesc("caddy_durable_streams_other_groups_bytes",
			"Stream data held by the placement groups group_bytes does not list, by storage.",
			[]string{"storage"}, nil),
		otherStreams: prometheus.NewDesc("caddy_durable_streams_other_groups_streams",
			"Streams of the placement groups group_streams does not list, by storage.",
			[]string{"storage"}, nil),
	}
)

// Live modes, the values of live_sessions' "mode" label.
const (
	modeLongPoll = "long_poll"
	modeSSE      = "sse"
)

// registerMetrics registers the module's collectors on a config's registry;
// a second handler in the same config finds them already there.
func registerMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{requestsTotal, directReads, rejections, liveSessions, engineStats,
		subscriptionStats, webhookDeliveries, webhookDuration} {
		if err := reg.Register(c); err != nil {
			if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); !ok {
				return err
			}
		}
	}
	return nil
}

// countRequest counts one finished request. WithLabelValues hashes the labels
// and takes the vector's lock, so each (method, status) counter is looked up
// once and then kept; the vector returns the same counter to every lookup.
func countRequest(method string, status int) {
	m := methodIndex(method)
	if status < 0 || status >= len(statusLabels) {
		requestsTotal.WithLabelValues(methodLabels[m], statusLabel(status)).Inc()
		return
	}
	slot := &requestCounters[m][status]
	c := slot.Load()
	if c == nil {
		counter := requestsTotal.WithLabelValues(methodLabels[m], statusLabels[status])
		c = &counter
		slot.Store(c)
	}
	(*c).Inc()
}

// requestCounters caches requestsTotal's counters by methodIndex and status.
var requestCounters [len(methodLabels)][statusLabelCount]atomic.Pointer[prometheus.Counter]

// methodLabels are the method label's values; the last is every other method.
var methodLabels = [...]string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodDelete, http.MethodOptions, http.MethodPatch, "OTHER"}

// methodIndex keeps the label's cardinality bounded.
func methodIndex(m string) int {
	switch m {
	case http.MethodGet:
		return 0
	case http.MethodHead:
		return 1
	case http.MethodPost:
		return 2
	case http.MethodPut:
		return 3
	case http.MethodDelete:
		return 4
	case http.MethodOptions:
		return 5
	case http.MethodPatch:
		return 6
	}
	return len(methodLabels) - 1
}

func statusLabel(status int) string {
	if status >= 0 && status < len(statusLabels) {
		return statusLabels[status]
	}
	return strconv.Itoa(status)
}

// statusLabelCount: statuses 0-599 have a preformatted label and a cached counter.
const statusLabelCount = 600

var statusLabels = func() []string {
	s := make([]string, statusLabelCount)
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

// engineCollector reports every open engine's counters at scrape time.
type engineCollector struct {
	streams, parked, adopted, appends, appendedBytes *prometheus.Desc
	commits, committedWrites, checksumFailures       *prometheus.Desc // data_dir engines only
	commitFlushes, flushesWaited                     *prometheus.Desc // data_dir engines only
	storageState, storageErrors                      *prometheus.Desc // data_dir engines only
	streamBytes, groupBytes, groupStreams            *prometheus.Desc
	otherBytes, otherStreams                         *prometheus.Desc
}

// topGroups is how many placement groups group_bytes lists per engine:
// the label's cardinality stays bounded however many groups there are.
const topGroups = 10

func (c engineCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.streams
	ch <- c.parked
	ch <- c.adopted
	ch <- c.appends
	ch <- c.appendedBytes
	ch <- c.commits
	ch <- c.committedWrites
	ch <- c.commitFlushes
	ch <- c.flushesWaited
	ch <- c.storageState
	ch <- c.storageErrors
	ch <- c.checksumFailures
	ch <- c.streamBytes
	ch <- c.groupBytes
	ch <- c.groupStreams
	ch <- c.otherBytes
	ch <- c.otherStreams
}

func (c engineCollector) Collect(ch chan<- prometheus.Metric) {
	rangeEngines(func(key string, e *native.Engine) {
		s := e.Stats()
		ch <- prometheus.MustNewConstMetric(c.streams, prometheus.GaugeValue, float64(s.Streams), key)
		ch <- prometheus.MustNewConstMetric(c.parked, prometheus.GaugeValue, float64(s.ParkedSessions), key)
		ch <- prometheus.MustNewConstMetric(c.adopted, prometheus.GaugeValue, float64(s.AdoptedSessions), key)
		ch <- prometheus.MustNewConstMetric(c.appends, prometheus.CounterValue, float64(s.Appends), key)
		ch <- prometheus.MustNewConstMetric(c.appendedBytes, prometheus.CounterValue, float64(s.BytesAppended), key)
		ch <- prometheus.MustNewConstMetric(c.streamBytes, prometheus.GaugeValue, float64(s.StreamBytes), key)
		top, rest := e.TopGroups(topGroups)
		for _, g := range top {
			ch <- prometheus.MustNewConstMetric(c.groupBytes, prometheus.GaugeValue, float64(g.Bytes), key, g.Name)
			ch <- prometheus.MustNewConstMetric(c.groupStreams, prometheus.GaugeValue, float64(g.Streams), key, g.Name)
		}
		ch <- prometheus.MustNewConstMetric(c.otherBytes, prometheus.GaugeValue, float64(rest.Bytes), key)
		ch <- prometheus.MustNewConstMetric(c.otherStreams, prometheus.GaugeValue, float64(rest.Streams), key)
		if strings.HasPrefix(key, memoryKeyPrefix) {
			return // nothing is committed in memory
		}
		ch <- prometheus.MustNewConstSummary(c.commits, s.Commits, s.CommitTime.Seconds(), nil, key)
		ch <- prometheus.MustNewConstMetric(c.committedWrites, prometheus.CounterValue, float64(s.CommittedWrites), key)
		ch <- prometheus.MustNewConstMetric(c.commitFlushes, prometheus.CounterValue, float64(s.CommitFlushes), key)
		ch <- prometheus.MustNewConstMetric(c.flushesWaited, prometheus.CounterValue, float64(s.FlushesWaited), key)
		ch <- prometheus.MustNewConstMetric(c.storageState, prometheus.GaugeValue, float64(s.StorageState), key)
		ch <- prometheus.MustNewConstMetric(c.storageErrors, prometheus.CounterValue, float64(s.NoSpaceAnswers), key, "no_space")
		ch <- prometheus.MustNewConstMetric(c.storageErrors, prometheus.CounterValue, float64(s.StorageErrorAnswers), key, "io_error")
		ch <- prometheus.MustNewConstMetric(c.checksumFailures, prometheus.CounterValue, float64(s.ChecksumFailures), key)
	})
}

// liveCollector reports live_sessions: the goroutines' counts, plus the
// sessions every open engine took over: the long-polls it answers on a
// connection it will give back (keptLongPolls), and the rest, SSE. (A
// long-poll taken over to be answered with Connection: close, which a
// client asked for, counts as SSE while it waits.)
type liveCollector struct{ desc *prometheus.Desc }

func (c liveCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c liveCollector) Collect(ch chan<- prometheus.Metric) {
	var adopted int64
	rangeEngines(func(_ string, e *native.Engine) {
		adopted += int64(e.Stats().AdoptedSessions)
	})
	// The engine forgets an answered long-poll just before it gives its
	// connection back: never count more kept ones than it holds.
	kept := min(keptLongPolls.Load(), adopted)
	sse := liveStreams.Load() + adopted - kept
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(liveLongPolls.Load()+kept), modeLongPoll)
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(sse), modeSSE)
}
