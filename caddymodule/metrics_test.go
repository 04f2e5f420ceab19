package caddymodule

import (
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
