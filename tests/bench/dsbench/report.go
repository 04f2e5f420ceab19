package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

type scenarioInfo struct {
	name, title string
	latency     bool // primary figure is p99 delivery latency (lower is better)
}

var scenarioOrder = []scenarioInfo{
	{"append-1", "append 100 B, 1 stream, 64 conns", false},
	{"append-64", "append 100 B, 64 streams, 64 conns", false},
	{"append-producer", "append with producer headers, 16 producers pipelined", false},
	{"read-small", "catch-up read, small stream, 64 conns", false},
	{"read-large", "catch-up read, large stream, in chunks", false},
	{"fanout-sse", "fan-out to SSE subscribers", true},
	{"fanout-longpoll", "fan-out to long-poll subscribers", true},
	{"fanout-sse-h2", "fan-out to SSE subscribers over TLS + HTTP/2", true},
	{"fanout-longpoll-h2", "fan-out to long-poll subscribers over TLS + HTTP/2", true},
	{"many-streams", "many streams: appends to random ones", false},
	{"bodies", "concurrent large chunked POSTs: server peak RSS growth", false},
	{"append-subscribed", "appends to many streams, 1,000 pattern subscriptions (extra.ratio: to none)", false},
}

// ceiling-hdrs is the respond ceiling of read-small sending the same headers
// as a stream read: it separates what the protocol's headers cost net/http
// from what the handler costs.
var serverOrder = []string{"ceiling", "ceiling-hdrs", "ours-mem", "ours-disk", "node-mem", "node-disk", "goplugin-mem", "goplugin-disk", "rust-mem", "rust-wal"}

// rustCounterpart is the Rust server in the same storage mode as one of
// ours: memory for memory, its write-ahead log ("wal") for data_dir.
func rustCounterpart(server string) string {
	switch server {
	case "ours-mem":
		return "rust-mem"
	case "ours-disk":
		return "rust-wal"
	}
	return ""
}

// reference and goplugin counterparts of a server (same storage mode).
func counterpart(server, family string) string {
	mode := "mem"
	if strings.HasSuffix(server, "-disk") {
		mode = "disk"
	}
	if strings.HasPrefix(server, family) || strings.HasPrefix(server, "ceiling") || strings.HasPrefix(server, "rust") {
		return ""
	}
	if family == "goplugin" && !strings.HasPrefix(server, "ours") {
		return ""
	}
	return family + "-" + mode
}

type results struct {
	byKey map[string]Record // scenario/server
}

func (rs results) get(scenario, server string) (Record, bool) {
	r, ok := rs.byKey[scenario+"/"+server]
	return r, ok && r.Status == "ok"
}

// ratio is how many times better a is than b: throughput a/b, or for
// latency scenarios p99 b/a. ok is false when either is missing or failed.
func (rs results) ratio(sc scenarioInfo, a, b string) (float64, bool) {
	ra, okA := rs.get(sc.name, a)
	rb, okB := rs.get(sc.name, b)
	if !okA || !okB {
		return 0, false
	}
	if sc.latency {
		if ra.P99Ms <= 0 {
			return 0, false
		}
		return rb.P99Ms / ra.P99Ms, true
	}
	if rb.Throughput <= 0 {
		return 0, false
	}
	return ra.Throughput / rb.Throughput, true
}

// cpuRatios lists, per scenario, other's server CPU per operation divided by
// server's: the throughput ratio both would reach if CPU-bound, which is
// steadier than throughput on a machine shared with other work.
func (rs results) cpuRatios(server, other string, scenarios []string) string {
	var parts []string
	for _, s := range scenarios {
		a, okA := rs.get(s, server)
		b, okB := rs.get(s, other)
		if okA && okB && a.CPUUsPerOp > 0 && b.CPUUsPerOp > 0 {
			parts = append(parts, fmt.Sprintf("%s %.2f×", s, b.CPUUsPerOp/a.CPUUsPerOp))
		}
	}
	return strings.Join(parts, ", ")
}

func cmdReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	in := fs.String("in", "", "results JSONL")
	out := fs.String("out", "", "directory for results.md and chart data")
	meta := fs.String("meta", "", "file of 'key: value' lines describing the run")
	showTargets := fs.Bool("targets", true, "evaluate and print the targets")
	fs.Parse(args)
	recs, err := readRecords(*in)
	if err != nil {
		return err
	}
	recs = mergeRounds(recs)
	rs := results{byKey: map[string]Record{}}
	var extraScenarios []string
	known := map[string]bool{}
	for _, s := range scenarioOrder {
		known[s.name] = true
	}
	for _, r := range recs {
		rs.byKey[r.Scenario+"/"+r.Server] = r
		if !known[r.Scenario] {
			known[r.Scenario] = true
			extraScenarios = append(extraScenarios, r.Scenario)
		}
	}
	scenarios := scenarioOrder
	for _, s := range extraScenarios {
		scenarios = append(scenarios, scenarioInfo{name: s, title: s})
	}

	header := []string{"scenario", "server", "status", "throughput", "p50 ms", "p99 ms", "max ms", "srv CPU", "memory", "threads", "× ceiling", "× node", "× goplugin", "× rust", "note"}
	var rows [][]string
	for _, sc := range scenarios {
		for _, srv := range serverOrder {
			r, present := rs.byKey[sc.name+"/"+srv]
			if !present {
				continue
			}
			row := []string{sc.name, srv, r.Status, "", "", "", "", "", "", "", "", "", "", "", r.Note}
			if r.Status == "ok" || r.Status == "error" {
				if r.Throughput > 0 {
					row[3] = fmt.Sprintf("%s %s", human(r.Throughput), r.Unit)
				}
				row[4], row[5], row[6] = num(r.P50Ms), num(r.P99Ms), num(r.MaxMs)
				if r.CPUUsPerOp > 0 {
					per := "req"
					if r.Unit == "MB/s" {
						per = "MB"
					}
					row[7] = fmt.Sprintf("%s µs/%s", num(r.CPUUsPerOp), per)
				}
				switch {
				case r.RSSPerSubKiB != 0:
					row[8] = fmt.Sprintf("%.1f KiB/sub", r.RSSPerSubKiB)
				case r.Extra["rss_per_stream_kib"] != 0:
					row[8] = fmt.Sprintf("%.0f MiB, %.2f KiB/stream", r.RSSKiB/1024, r.Extra["rss_per_stream_kib"])
				case r.RSSKiB != 0:
					row[8] = fmt.Sprintf("%.0f MiB", r.RSSKiB/1024)
				}
				if r.Threads > 0 {
					row[9] = fmt.Sprint(r.Threads)
				}
			}
			if srv != "ceiling" {
				if v, ok := rs.ratio(sc, srv, "ceiling"); ok {
					row[10] = fmt.Sprintf("%.2f", v)
				}
				if cp := counterpart(srv, "node"); cp != "" {
					if v, ok := rs.ratio(sc, srv, cp); ok {
						row[11] = fmt.Sprintf("%.2f", v)
					}
				}
				if cp := counterpart(srv, "goplugin"); cp != "" {
					if v, ok := rs.ratio(sc, srv, cp); ok {
						row[12] = fmt.Sprintf("%.2f", v)
					}
				}
				if cp := rustCounterpart(srv); cp != "" {
					if v, ok := rs.ratio(sc, srv, cp); ok {
						row[13] = fmt.Sprintf("%.2f", v)
					}
				}
			}
			rows = append(rows, row)
		}
	}

	// Console table (without notes, which go to the Markdown file).
	printTable(os.Stdout, header[:len(header)-1], rows)
	var targets []target
	if *showTargets {
		targets = evaluateTargets(rs)
		fmt.Println()
		for _, t := range targets {
			fmt.Printf("%-8s %s: %s\n", t.verdict, t.name, t.detail)
		}
	}

	if *out == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(*out, "chart"), 0o755); err != nil {
		return err
	}
	if err := writeMarkdown(filepath.Join(*out, "results.md"), *meta, header, rows, targets); err != nil {
		return err
	}
	return writeChartData(filepath.Join(*out, "chart"), rs, scenarios)
}

func human(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func num(v float64) string {
	if v == 0 {
		return ""
	}
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	if v >= 10 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func printTable(w *os.File, header []string, rows [][]string) {
	width := make([]int, len(header))
	for i, h := range header {
		width[i] = len([]rune(h))
	}
	for _, r := range rows {
		for i := range header {
			width[i] = max(width[i], len([]rune(r[i])))
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		for i := range header {
			c := cells[i]
			b.WriteString(c)
			b.WriteString(strings.Repeat(" ", width[i]-len([]rune(c))+2))
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	prev := ""
	for _, r := range rows {
		if prev != "" && r[0] != prev {
			fmt.Fprintln(w)
		}
		prev = r[0]
		line(r)
	}
}

type target struct {
	name, verdict, detail string
}

// evaluateTargets checks the targets against this run.
func evaluateTargets(rs results) []target {
	var out []target
	byName := map[string]scenarioInfo{}
	for _, s := range scenarioOrder {
		byName[s.name] = s
	}
	// check compares ratio(server vs other) >= want over the scenarios.
	check := func(name string, server, other string, want float64, scenarios ...string) {
		t := target{name: name, verdict: "MET"}
		var parts []string
		missing := 0
		for _, s := range scenarios {
			v, ok := rs.ratio(byName[s], server, other)
			if !ok {
				parts = append(parts, fmt.Sprintf("%s n/a", s))
				missing++
				continue
			}
			parts = append(parts, fmt.Sprintf("%s %.2f×", s, v))
			if v < want {
				t.verdict = "MISSED"
			}
		}
		if missing == len(scenarios) {
			t.verdict = "N/A"
		} else if missing > 0 && t.verdict == "MET" {
			t.verdict = "PARTIAL"
		}
		t.detail = fmt.Sprintf("want ≥ %.2f×: %s", want, strings.Join(parts, ", "))
		if cpu := rs.cpuRatios(server, other, scenarios); cpu != "" {
			t.detail += "; server CPU per request, " + other + " ÷ " + server + ": " + cpu
		}
		out = append(out, t)
	}
	appends := []string{"append-1", "append-64", "append-producer"}
	check("append, memory, vs node (memory)", "ours-mem", "node-mem", 3, appends...)
	check("append, memory, vs respond ceiling", "ours-mem", "ceiling", 0.6, appends...)
	check("append, data_dir fsync, vs node dataDir", "ours-disk", "node-disk", 20, appends...)
	var all []string
	for _, s := range scenarioOrder {
		all = append(all, s.name)
	}
	check("data_dir ahead of the Go plugin's file store, every scenario", "ours-disk", "goplugin-disk", 1.0000001, all...)
	check("small catch-up read vs respond ceiling", "ours-mem", "ceiling", 0.8, "read-small")
	if _, ok := rs.get("read-small", "ceiling-hdrs"); ok {
		check("small catch-up read vs respond sending the same headers (context, not an issue target)", "ours-mem", "ceiling-hdrs", 0.8, "read-small")
	}
	check("large catch-up read vs file_server", "ours-mem", "ceiling", 0.7, "read-large")
	check("fan-out SSE p99 ≤ 1/5 of node's", "ours-mem", "node-mem", 5, "fanout-sse")

	// Issue 21: the Rust server as the reference. Ratios of ours ÷ rust in
	// the same storage mode for every scenario (≥ 1 is ahead), then the
	// issue's own targets.
	var rustAll []string // what the Rust server runs: plain HTTP/1.1, no bodies
	for _, s := range all {
		if s != "bodies" && !strings.HasSuffix(s, "-h2") {
			rustAll = append(rustAll, s)
		}
	}
	check("memory vs the Rust server (memory), every scenario", "ours-mem", "rust-mem", 1, rustAll...)
	check("data_dir vs the Rust server (wal), every scenario", "ours-disk", "rust-wal", 1, rustAll...)
	for _, p := range [][2]string{{"ours-mem", "rust-mem"}, {"ours-disk", "rust-wal"}} {
		out = append(out, rssTarget(rs, "fanout-longpoll", p[0], p[1], 0, "long-poll fan-out "+p[0]+": RSS per waiter ≤ "+p[1]+"'s, p99 ≤ its p99"))
		out = append(out, rssTarget(rs, "fanout-sse", p[0], p[1], 2, "SSE fan-out "+p[0]+": RSS per subscriber ≤ 2 KiB, p99 ≤ "+p[1]+"'s"))
	}
	check("data_dir appends ≥ 0.8× our memory rate (1 and 64 streams)", "ours-disk", "ours-mem", 0.8, "append-1", "append-64")
	check("data_dir producer appends ≥ 0.6× our memory rate", "ours-disk", "ours-mem", 0.6, "append-producer")
	check("100,000 streams with data_dir ≥ 0.5× memory", "ours-disk", "ours-mem", 0.5, "many-streams")
	check("many streams in memory ahead of the Go plugin", "ours-mem", "goplugin-mem", 1.0000001, "many-streams")
	for _, srv := range []string{"ours-mem", "ours-disk"} {
		out = append(out, h2Target(rs, "fanout-sse", srv), h2Target(rs, "fanout-longpoll", srv))
	}

	t := target{name: "fan-out SSE: RSS per subscriber ≤ 16 KiB, threads < 100", verdict: "N/A"}
	if r, ok := rs.get("fanout-sse", "ours-mem"); ok {
		t.verdict = "MET"
		if r.RSSPerSubKiB > 16 || r.Threads >= 100 || r.Threads == 0 {
			t.verdict = "MISSED"
		}
		t.detail = fmt.Sprintf("%.1f KiB/subscriber idle (peak during delivery %.1f), %d threads",
			r.RSSPerSubKiB, r.Extra["peak_rss_per_sub_kib"], r.Threads)
	}
	out = append(out, t)
	return out
}

// rssTarget: server's RSS per subscriber ≤ other's (or ≤ maxKiB when that
// is set) and its p99 ≤ other's, in one fan-out scenario.
func rssTarget(rs results, scenario, server, other string, maxKiB float64, name string) target {
	t := target{name: name, verdict: "N/A"}
	a, okA := rs.get(scenario, server)
	b, okB := rs.get(scenario, other)
	if !okA || !okB {
		return t
	}
	limit := b.RSSPerSubKiB
	if maxKiB > 0 {
		limit = maxKiB
	}
	t.verdict = "MET"
	if a.RSSPerSubKiB > limit || a.P99Ms > b.P99Ms {
		t.verdict = "MISSED"
	}
	t.detail = fmt.Sprintf("%.1f KiB/sub (%s %.1f), p99 %.1f ms (%s %.1f ms)",
		a.RSSPerSubKiB, other, b.RSSPerSubKiB, a.P99Ms, other, b.P99Ms)
	if met, n, ok := roundsAtOrBelow(a, b); ok {
		t.detail += fmt.Sprintf("; medians of %d rounds, p99 ≤ %s's in %d of %d", int(a.Extra["rounds"]), other, met, n)
	}
	return t
}

// h2Target: a fan-out over TLS + HTTP/2 (where the connection takeover does
// not apply) within 2× of the same server's plain HTTP/1.1 fan-out, on p99
// and on RSS per subscriber.
func h2Target(rs results, scenario, server string) target {
	t := target{name: scenario + "-h2 " + server + ": p99 and RSS per subscriber within 2× of " + scenario, verdict: "N/A"}
	h1, ok1 := rs.get(scenario, server)
	h2, ok2 := rs.get(scenario+"-h2", server)
	if !ok1 || !ok2 || h1.P99Ms <= 0 || h1.RSSPerSubKiB <= 0 {
		return t
	}
	pr, mr := h2.P99Ms/h1.P99Ms, h2.RSSPerSubKiB/h1.RSSPerSubKiB
	t.verdict = "MET"
	if pr > 2 || mr > 2 {
		t.verdict = "MISSED"
	}
	t.detail = fmt.Sprintf("p99 %.1f ms vs %.1f ms (%.2f×), %.1f vs %.1f KiB/sub (%.2f×)",
		h2.P99Ms, h1.P99Ms, pr, h2.RSSPerSubKiB, h1.RSSPerSubKiB, mr)
	return t
}

func writeMarkdown(path, metaPath string, header []string, rows [][]string, targets []target) error {
	var b strings.Builder
	b.WriteString("# durable-streams-server benchmark\n\n")
	if metaPath != "" {
		if f, err := os.Open(metaPath); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				line := sc.Text()
				if k, v, ok := strings.Cut(line, ":"); ok {
					fmt.Fprintf(&b, "- **%s**: %s\n", strings.TrimSpace(k), strings.TrimSpace(v))
				}
			}
			f.Close()
			b.WriteString("\n")
		}
	}
	b.WriteString("![chart](results.png)\n\n")
	b.WriteString("## Results\n\n")
	b.WriteString("Throughput is requests per second (MB/s for the large read, 10^6 bytes). " +
		"Ratios are how many times better the row is than the column's server in the same storage mode " +
		"(throughput ÷ throughput; for fan-out, the other's p99 ÷ this p99). " +
		"`ceiling` is Caddy's `respond` handler in the same binary (and `file_server` for the large read); " +
		"`ceiling-hdrs` is `respond` with the same headers a stream read sends (CORS, security, caching, Stream-*). " +
		"`node` is `@durable-streams/server`, `goplugin` the Go Caddy plugin, `rust` the Rust server " +
		"(crate `durable-streams`; `× rust` compares memory with its memory mode and `data_dir` with its `wal` mode). " +
		"`srv CPU` is the server process's CPU time (all threads) per request, or per MB " +
		"(fan-out: per delivered piece, over the appends' phase): " +
		"steadier than throughput when other work shares the machine.\n\n")
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat(" --- |", len(header)) + "\n")
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = strings.ReplaceAll(c, "|", "\\|")
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	if len(targets) > 0 {
		b.WriteString("\n## Targets\n\n| target | verdict | measured |\n| --- | --- | --- |\n")
		for _, t := range targets {
			fmt.Fprintf(&b, "| %s | **%s** | %s |\n", t.name, t.verdict, t.detail)
		}
	}
	b.WriteString("\nRatios come from one run on one machine; client and servers share its cores.\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// writeChartData writes one file per scenario ("server value" lines, ok
// records only) and an index the gnuplot script iterates over.
func writeChartData(dir string, rs results, scenarios []scenarioInfo) error {
	var index strings.Builder
	for _, sc := range scenarios {
		var b strings.Builder
		unit := ""
		for _, srv := range serverOrder {
			r, ok := rs.get(sc.name, srv)
			if !ok {
				continue
			}
			v := r.Throughput
			unit = r.Unit
			if sc.latency {
				v, unit = r.P99Ms, "p99 delivery ms, lower is better"
			}
			fmt.Fprintf(&b, "%s %g\n", srv, v)
		}
		if b.Len() == 0 {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, sc.name+".dat"), []byte(b.String()), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(&index, "%s\t%s (%s)\n", sc.name, sc.title, unit)
	}
	return os.WriteFile(filepath.Join(dir, "index.tsv"), []byte(index.String()), 0o644)
}
