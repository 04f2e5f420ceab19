package main

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestCounterpart(t *testing.T) {
	cases := []struct{ server, family, want string }{
		{"ours-mem", "node", "node-mem"},
		{"ours-disk", "node", "node-disk"},
		{"goplugin-disk", "node", "node-disk"},
		{"node-mem", "node", ""},
		{"ours-disk", "goplugin", "goplugin-disk"},
		{"node-mem", "goplugin", ""},
		{"goplugin-mem", "goplugin", ""},
		{"ceiling-hdrs", "node", ""},
		{"ceiling-hdrs", "goplugin", ""},
	}
	for _, c := range cases {
		if got := counterpart(c.server, c.family); got != c.want {
			t.Errorf("counterpart(%q, %q) = %q, want %q", c.server, c.family, got, c.want)
		}
	}
}

func TestRatioAndTargets(t *testing.T) {
	rs := results{byKey: map[string]Record{}}
	add := func(r Record) { rs.byKey[r.Scenario+"/"+r.Server] = r }
	add(Record{Scenario: "append-1", Server: "ceiling", Status: "ok", Throughput: 100})
	add(Record{Scenario: "append-1", Server: "ours-mem", Status: "ok", Throughput: 70})
	add(Record{Scenario: "append-1", Server: "node-mem", Status: "ok", Throughput: 20})
	add(Record{Scenario: "fanout-sse", Server: "ours-mem", Status: "ok", P99Ms: 10, RSSPerSubKiB: 12, Threads: 20})
	add(Record{Scenario: "fanout-sse", Server: "node-mem", Status: "ok", P99Ms: 60})
	add(Record{Scenario: "append-64", Server: "node-mem", Status: "unavailable"})
	add(Record{Scenario: "read-small", Server: "ceiling", Status: "ok", Throughput: 100})
	add(Record{Scenario: "read-small", Server: "ceiling-hdrs", Status: "ok", Throughput: 80})
	add(Record{Scenario: "read-small", Server: "ours-mem", Status: "ok", Throughput: 76})

	if v, ok := rs.ratio(scenarioOrder[0], "ours-mem", "ceiling"); !ok || v != 0.7 {
		t.Errorf("append-1 ours/ceiling = %v %v, want 0.7", v, ok)
	}
	if v, ok := rs.ratio(scenarioOrder[5], "ours-mem", "node-mem"); !ok || v != 6 {
		t.Errorf("fanout-sse node p99 / ours p99 = %v %v, want 6", v, ok)
	}
	if _, ok := rs.ratio(scenarioOrder[1], "ours-mem", "node-mem"); ok {
		t.Error("ratio against an unavailable server must be missing")
	}
	verdicts := map[string]string{}
	for _, tg := range evaluateTargets(rs) {
		verdicts[tg.name] = tg.verdict
	}
	for name, want := range map[string]string{
		"append, memory, vs node (memory)":                                                       "PARTIAL", // 3.5× on append-1, rest missing
		"append, memory, vs respond ceiling":                                                     "PARTIAL",
		"append, data_dir fsync, vs node dataDir":                                                "N/A",
		"fan-out SSE p99 ≤ 1/5 of node's":                                                        "MET",
		"small catch-up read vs respond ceiling":                                                 "MISSED", // 0.76×
		"small catch-up read vs respond sending the same headers (context, not an issue target)": "MET",    // 0.95×
		"fan-out SSE: RSS per subscriber ≤ 16 KiB, threads < 100":                                "MET",
	} {
		if verdicts[name] != want {
			t.Errorf("%s: verdict %q, want %q", name, verdicts[name], want)
		}
	}
}

func TestStamp(t *testing.T) {
	f := &fanout{start: time.Now(), delivered: make([]atomic.Int64, 3), recv: [][]atomic.Int64{make([]atomic.Int64, 3)}}
	f.stamp(0, []byte("data:#fanout-0#abc#fanout-2#xyz#fanout-7#"))
	f.stamp(0, []byte("#fanout-0#")) // a second copy does not count
	f.stamp(0, []byte("#fanout-1"))  // cut marker does not count
	if f.delivered[0].Load() != 1 || f.delivered[1].Load() != 0 || f.delivered[2].Load() != 1 {
		t.Errorf("delivered = %d %d %d, want 1 0 1", f.delivered[0].Load(), f.delivered[1].Load(), f.delivered[2].Load())
	}
}

func TestCheckLoopback(t *testing.T) {
	for u, ok := range map[string]bool{
		"http://127.0.0.1:8080": true,
		"http://localhost:1":    true,
		"http://[::1]:9":        true,
		"http://10.0.0.1:80":    false,
		"http://example.com":    false,
	} {
		if err := checkLoopback(u); (err == nil) != ok {
			t.Errorf("checkLoopback(%q) = %v", u, err)
		}
	}
}
