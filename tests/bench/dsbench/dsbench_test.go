package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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

func TestCommitCountersAndNote(t *testing.T) {
	const exposition = `# HELP caddy_durable_streams_commit_duration_seconds Group commits.
# TYPE caddy_durable_streams_commit_duration_seconds summary
caddy_durable_streams_commit_duration_seconds_sum{storage="/var/lib/a b"} 1.5
caddy_durable_streams_commit_duration_seconds_count{storage="/var/lib/a b"} 1000
caddy_durable_streams_commit_duration_seconds_sum{storage="/srv/other"} 0.5
caddy_durable_streams_commit_duration_seconds_count{storage="/srv/other"} 200
# TYPE caddy_durable_streams_committed_writes_total counter
caddy_durable_streams_committed_writes_total{storage="/var/lib/a b"} 6000
caddy_durable_streams_committed_writes_total{storage="/srv/other"} 1200
caddy_durable_streams_appends_total{storage="/srv/other"} 99999
`
	after, err := parseCommitCounters(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	if want := (commitCounters{Commits: 1200, Seconds: 2, Writes: 7200}); after != want {
		t.Fatalf("parsed %+v, want %+v", after, want)
	}
	if _, err := parseCommitCounters(strings.NewReader("caddy_durable_streams_appends_total 5\n")); err == nil {
		t.Error("a server without commit metrics parsed without error")
	}

	before, after2, ok := parseCommitReadings("200 0.4 1000;1200 2 7200")
	if !ok || after2 != after {
		t.Fatalf("readings: %+v %+v %v", before, after2, ok)
	}
	note, extra, ok := commitNote(before, after, 2)
	if !ok {
		t.Fatal("no note")
	}
	// 1,000 commits in 2 s taking 1.6 s: 500/s, 1.6 ms each, 6.2 writes each, 80% busy.
	if want := "group commits: 500/s, 1.60 ms each, 6.2 writes each, committer busy 80%"; note != want {
		t.Errorf("note %q, want %q", note, want)
	}
	if extra["commits_per_s"] != 500 || extra["commit_ms"] != 1.6 || extra["writes_per_commit"] != 6.2 || extra["committer_busy"] != 80 {
		t.Errorf("extra %v", extra)
	}
	if _, _, ok := commitNote(after, after, 2); ok {
		t.Error("a note for a run without commits")
	}
	// With the flushes waited (fourth number): 14,400 over 7,200 - 1,000 writes.
	b4, a4, ok := parseCommitReadings("200 0.4 1000 2000;1200 2 7200 16400")
	if !ok {
		t.Fatal("four-number readings rejected")
	}
	note, extra, ok = commitNote(b4, a4, 2)
	if want := "group commits: 500/s, 1.60 ms each, 6.2 writes each, committer busy 80%, 2.3 flushes waited per write"; !ok || note != want {
		t.Errorf("note %q, want %q", note, want)
	}
	if extra["flushes_per_write"] != 2.32 {
		t.Errorf("extra %v", extra)
	}
	for _, bad := range []string{"", "-;-", "1 2 3", "1 2;3 4 5", "1 2 x;1 2 3", "1 2 3;1 2 3 4", "1 2 3 4 5;1 2 3 4 5"} {
		if _, _, ok := parseCommitReadings(bad); ok {
			t.Errorf("readings %q accepted", bad)
		}
	}
}

func TestRustCounterpartAndRatio(t *testing.T) {
	for server, want := range map[string]string{"ours-mem": "rust-mem", "ours-disk": "rust-wal", "node-mem": "", "rust-mem": "", "ceiling": ""} {
		if got := rustCounterpart(server); got != want {
			t.Errorf("rustCounterpart(%q) = %q, want %q", server, got, want)
		}
	}
	// The Rust rows get no node/goplugin column (rust-wal is not node-mem).
	for _, fam := range []string{"node", "goplugin"} {
		if got := counterpart("rust-wal", fam); got != "" {
			t.Errorf("counterpart(rust-wal, %s) = %q, want none", fam, got)
		}
	}
	rs := results{byKey: map[string]Record{}}
	add := func(r Record) { rs.byKey[r.Scenario+"/"+r.Server] = r }
	add(Record{Scenario: "fanout-longpoll", Server: "ours-mem", Status: "ok", P99Ms: 80, RSSPerSubKiB: 6})
	add(Record{Scenario: "fanout-longpoll", Server: "rust-mem", Status: "ok", P99Ms: 90, RSSPerSubKiB: 7.2})
	add(Record{Scenario: "fanout-sse", Server: "ours-mem", Status: "ok", P99Ms: 30, RSSPerSubKiB: 2.5})
	add(Record{Scenario: "fanout-sse", Server: "rust-mem", Status: "ok", P99Ms: 40, RSSPerSubKiB: 0.9})
	add(Record{Scenario: "fanout-sse-h2", Server: "ours-mem", Status: "ok", P99Ms: 61, RSSPerSubKiB: 4})
	add(Record{Scenario: "fanout-longpoll-h2", Server: "ours-mem", Status: "ok", P99Ms: 150, RSSPerSubKiB: 12})
	if got := rssTarget(rs, "fanout-longpoll", "ours-mem", "rust-mem", 0, "lp").verdict; got != "MET" {
		t.Errorf("long-poll 6 KiB ≤ 7.2, 80 ≤ 90 ms: %s, want MET", got)
	}
	add(Record{Scenario: "fanout-longpoll", Server: "ours-disk", Status: "ok", P99Ms: 100, RSSPerSubKiB: 5})
	add(Record{Scenario: "fanout-longpoll", Server: "rust-wal", Status: "ok", P99Ms: 90, RSSPerSubKiB: 7.2})
	if got := rssTarget(rs, "fanout-longpoll", "ours-disk", "rust-wal", 0, "lp").verdict; got != "MISSED" {
		t.Errorf("long-poll p99 100 ms > 90 ms: %s, want MISSED", got)
	}
	if got := rssTarget(rs, "fanout-sse", "ours-mem", "rust-mem", 2, "sse").verdict; got != "MISSED" {
		t.Errorf("SSE 2.5 KiB > 2 KiB: %s, want MISSED", got)
	}
	if got := h2Target(rs, "fanout-sse", "ours-mem").verdict; got != "MISSED" {
		t.Errorf("h2 SSE p99 61 ms > 2 × 30 ms: %s, want MISSED", got)
	}
	if got := h2Target(rs, "fanout-longpoll", "ours-mem").verdict; got != "MET" {
		t.Errorf("h2 long-poll 150 ≤ 160 ms, 12 ≤ 12 KiB: %s, want MET", got)
	}
	if got := h2Target(rs, "fanout-sse", "ours-disk").verdict; got != "N/A" {
		t.Errorf("no records: %s, want N/A", got)
	}
}

func TestScrapeLongPolls(t *testing.T) {
	page := "# HELP caddy_durable_streams_live_sessions Live sessions.\n" +
		"# TYPE caddy_durable_streams_live_sessions gauge\n" +
		"caddy_durable_streams_live_sessions{mode=\"sse\"} 7\n" +
		"caddy_durable_streams_live_sessions{mode=\"long_poll\"} 4321\n" +
		"caddy_durable_streams_live_sessions_total 9\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics":
			_, _ = io.WriteString(w, page)
		case "/other":
			_, _ = io.WriteString(w, "go_goroutines 12\n")
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	if got := scrapeLongPolls(ctx, srv.Client(), srv.URL+"/metrics"); got != 4321 {
		t.Errorf("parked long-polls = %v, want 4321", got)
	}
	for _, path := range []string{"/other", "/missing"} {
		if got := scrapeLongPolls(ctx, srv.Client(), srv.URL+path); got != -1 {
			t.Errorf("%s: parked long-polls = %v, want -1", path, got)
		}
	}
}
