package caddymodule

import (
	"maps"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/durable-streams-server/durable-streams-server/native"
)

func TestMetricsRegisterTwiceAndGather(t *testing.T) {
	// Caddy gives every config a pedantic registry; two handlers in one
	// config register the same collectors.
	reg := prometheus.NewPedanticRegistry()
	for range 2 {
		if err := registerMetrics(reg); err != nil {
			t.Fatal(err)
		}
	}

	opts := native.Options{StreamRoot: "/metrics-test"}
	key := poolKey(opts)
	e, _, err := loadEngine(key, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer releaseEngine(key)
	var req native.Request
	req.Set(native.FieldMethod, "PUT")
	req.Set(native.FieldPath, "/metrics-test/s")
	req.Set(native.FieldContentType, "text/plain")
	req.Body = []byte("12345")
	resp, err := e.Handle(&req, 0)
	if err != nil {
		t.Fatal(err)
	}
	resp.Release()
	countRequest("PUT", 201)
	countRequest("BREW", 418)

	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather (pedantic): %v", err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	for _, want := range []string{
		"caddy_durable_streams_requests_total",
		"caddy_durable_streams_streams",
		"caddy_durable_streams_parked_sessions",
		"caddy_durable_streams_appends_total",
		"caddy_durable_streams_appended_bytes_total",
	} {
		if !names[want] {
			t.Errorf("missing %s", want)
		}
	}

	expected := `
# HELP caddy_durable_streams_streams Live streams (not expired, not deleted), by storage.
# TYPE caddy_durable_streams_streams gauge
caddy_durable_streams_streams{storage="memory:/metrics-test"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected), "caddy_durable_streams_streams"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(requestsTotal.WithLabelValues("OTHER", "418")); got < 1 {
		t.Errorf("unknown methods are not counted as OTHER (%v)", got)
	}
}

// The cached counters are the vector's own: every call counts.
func TestCountRequestCachesCounters(t *testing.T) {
	before := testutil.ToFloat64(requestsTotal.WithLabelValues("DELETE", "204"))
	beyond := testutil.ToFloat64(requestsTotal.WithLabelValues("PATCH", "999"))
	for range 3 {
		countRequest(http.MethodDelete, 204)
		countRequest(http.MethodPatch, 999)
	}
	if got := testutil.ToFloat64(requestsTotal.WithLabelValues("DELETE", "204")) - before; got != 3 {
		t.Errorf("DELETE 204 counted %v times, want 3", got)
	}
	if got := testutil.ToFloat64(requestsTotal.WithLabelValues("PATCH", "999")) - beyond; got != 3 {
		t.Errorf("PATCH 999 counted %v times, want 3", got)
	}
}

// A data_dir engine reports its group commits; an in-memory one does not.
func TestMetricsReportCommitsOfDataDirEngines(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if err := registerMetrics(reg); err != nil {
		t.Fatal(err)
	}
	opts := native.Options{StreamRoot: "/commit-metrics", DataDir: t.TempDir()}
	key := poolKey(opts)
	e, _, err := loadEngine(key, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer releaseEngine(key)
	memOpts := native.Options{StreamRoot: "/commit-metrics-mem"}
	memKey := poolKey(memOpts)
	if _, _, err := loadEngine(memKey, memOpts); err != nil {
		t.Fatal(err)
	}
	defer releaseEngine(memKey)

	for _, method := range []string{"PUT", "POST", "POST"} {
		var req native.Request
		req.Set(native.FieldMethod, method)
		req.Set(native.FieldPath, "/commit-metrics/s")
		req.Set(native.FieldContentType, "text/plain")
		req.Body = []byte("x")
		resp, err := e.Handle(&req, 0) // no session: the call waits for its commit
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Status(); got != 201 && got != 204 {
			t.Fatalf("%s: status %d", method, got)
		}
		resp.Release()
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather (pedantic): %v", err)
	}
	var commits, writes, seconds, flushes, flushesWaited float64
	storageSamples := map[string]float64{} // storage_state and storage_errors_total, by reason
	for _, f := range families {
		for _, m := range f.GetMetric() {
			storage := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "storage" {
					storage = l.GetValue()
				}
			}
			switch f.GetName() {
			case "caddy_durable_streams_commit_duration_seconds":
				if storage != key {
					t.Errorf("commit duration reported for %q", storage)
					continue
				}
				commits = float64(m.GetSummary().GetSampleCount())
				seconds = m.GetSummary().GetSampleSum()
			case "caddy_durable_streams_committed_writes_total":
				if storage != key {
					t.Errorf("committed writes reported for %q", storage)
					continue
				}
				writes = m.GetCounter().GetValue()
			case "caddy_durable_streams_commit_flushes_total", "caddy_durable_streams_commit_flushes_waited_total":
				if storage != key {
					t.Errorf("%s reported for %q", f.GetName(), storage)
					continue
				}
				if f.GetName() == "caddy_durable_streams_commit_flushes_total" {
					flushes = m.GetCounter().GetValue()
				} else {
					flushesWaited = m.GetCounter().GetValue()
				}
			case "caddy_durable_streams_storage_state", "caddy_durable_streams_storage_errors_total":
				if storage != key {
					t.Errorf("%s reported for %q", f.GetName(), storage)
					continue
				}
				name := f.GetName()
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" {
						name += "/" + l.GetValue()
					}
				}
				if g := m.GetGauge(); g != nil {
					storageSamples[name] = g.GetValue()
				} else {
					storageSamples[name] = m.GetCounter().GetValue()
				}
			}
		}
	}
	if commits != 3 || writes != 3 {
		t.Errorf("commits %v, committed writes %v; want 3 and 3 (one create, two appends, each waited for)", commits, writes)
	}
	if seconds <= 0 {
		t.Errorf("commit time %v, want > 0", seconds)
	}
	// fsync always: each write, alone in the queue, is committed (one
	// flush) and acknowledged after a sync makes its meta page durable.
	if flushes != 6 || flushesWaited != 6 {
		t.Errorf("flushes %v, flushes waited %v; want 6 and 6 (a commit and a sync per lone write)", flushes, flushesWaited)
	}
	wantStorage := map[string]float64{
		"caddy_durable_streams_storage_state":                 0,
		"caddy_durable_streams_storage_errors_total/no_space": 0,
		"caddy_durable_streams_storage_errors_total/io_error": 0,
	}
	if !maps.Equal(storageSamples, wantStorage) {
		t.Errorf("storage samples %v; want %v", storageSamples, wantStorage)
	}
}
