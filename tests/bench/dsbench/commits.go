package main

// Group commits of a data_dir server, read from its Prometheus endpoint
// before and after a load run: how often it flushed, how long a commit
// took and how many writes shared one. They say whether a durable append
// rate is bound by the disk (commits back to back, long ones) or by the
// round trips feeding it (few writes per commit, the committer idle).

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The metric names the server exports (caddymodule/metrics.go).
const (
	metricCommitCount  = "caddy_durable_streams_commit_duration_seconds_count"
	metricCommitSum    = "caddy_durable_streams_commit_duration_seconds_sum"
	metricCommitWrites = "caddy_durable_streams_committed_writes_total"
	// Summed over acknowledged writes, the flushes each waited for (servers
	// from before it do not export it).
	metricFlushesWaited = "caddy_durable_streams_commit_flushes_waited_total"
)

// commitCounters are the totals at one moment, summed over engines.
type commitCounters struct {
	Commits, Seconds, Writes float64
	FlushesWaited            float64 // zero when the server does not export it
}

// parseCommitCounters reads the counters from a Prometheus text exposition.
// It fails when the commit count is missing: a server without a data_dir,
// or without the metrics route.
func parseCommitCounters(r io.Reader) (commitCounters, error) {
	var c commitCounters
	found := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		// name{labels} value: labels may hold spaces, the value cannot.
		name := line[:strings.IndexAny(line+" ", "{ ")]
		value := line[strings.LastIndexByte(line, ' ')+1:]
		var dst *float64
		switch name {
		case metricCommitCount:
			dst, found = &c.Commits, true
		case metricCommitSum:
			dst = &c.Seconds
		case metricCommitWrites:
			dst = &c.Writes
		case metricFlushesWaited:
			dst = &c.FlushesWaited
		default:
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return c, fmt.Errorf("metric line %q: %v", line, err)
		}
		*dst += v
	}
	if err := sc.Err(); err != nil {
		return c, err
	}
	if !found {
		return c, errors.New("no " + metricCommitCount + " in the metrics")
	}
	return c, nil
}

// commitNote describes the commits between two readings over a run of
// `seconds`, and returns them as extra record fields; ok is false when
// nothing was committed.
func commitNote(before, after commitCounters, seconds float64) (note string, extra map[string]float64, ok bool) {
	commits := after.Commits - before.Commits
	if commits <= 0 || seconds <= 0 {
		return "", nil, false
	}
	perSecond := commits / seconds
	meanMs := (after.Seconds - before.Seconds) / commits * 1000
	writes := (after.Writes - before.Writes) / commits
	busy := (after.Seconds - before.Seconds) / seconds * 100
	extra = map[string]float64{
		"commits_per_s":     round(perSecond, 1),
		"commit_ms":         round(meanMs, 3),
		"writes_per_commit": round(writes, 2),
		"committer_busy":    round(busy, 1),
	}
	note = fmt.Sprintf("group commits: %.0f/s, %.2f ms each, %.1f writes each, committer busy %.0f%%",
		perSecond, meanMs, writes, busy)
	if waited := after.FlushesWaited - before.FlushesWaited; waited > 0 && after.Writes > before.Writes {
		perWrite := waited / (after.Writes - before.Writes)
		extra["flushes_per_write"] = round(perWrite, 2)
		note += fmt.Sprintf(", %.1f flushes waited per write", perWrite)
	}
	return note, extra, true
}

// cmdCommits prints the server's commit counters as four numbers
// (commits, seconds, writes, flushes waited), or "-" when it exports none.
func cmdCommits(args []string) error {
	fs := flag.NewFlagSet("commits", flag.ExitOnError)
	base := fs.String("base", "", "server base URL (loopback only)")
	path := fs.String("path", "/metrics", "the metrics route")
	fs.Parse(args)
	if err := checkLoopback(*base); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := scrapeCommits(ctx, *base+*path)
	if err != nil {
		fmt.Println("-")
		return nil
	}
	fmt.Printf("%g %g %g %g\n", c.Commits, c.Seconds, c.Writes, c.FlushesWaited)
	return nil
}

func scrapeCommits(ctx context.Context, u string) (commitCounters, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return commitCounters{}, err
	}
	resp, err := newClient(1, 5*time.Second).Do(req)
	if err != nil {
		return commitCounters{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return commitCounters{}, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return parseCommitCounters(resp.Body)
}

// parseCommitReadings reads wrkparse's -commits value: the two readings
// cmdCommits printed, separated by ";" (three numbers each from a dsbench
// before the flushes waited, four since; both readings alike).
func parseCommitReadings(s string) (before, after commitCounters, ok bool) {
	b, a, found := strings.Cut(s, ";")
	if !found {
		return before, after, false
	}
	parse := func(s string) (commitCounters, int, bool) {
		f := strings.Fields(s)
		if len(f) != 3 && len(f) != 4 {
			return commitCounters{}, 0, false
		}
		var v [4]float64
		for i := range f {
			x, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return commitCounters{}, 0, false
			}
			v[i] = x
		}
		return commitCounters{Commits: v[0], Seconds: v[1], Writes: v[2], FlushesWaited: v[3]}, len(f), true
	}
	before, nB, okB := parse(b)
	after, nA, okA := parse(a)
	return before, after, okB && okA && nB == nA
}
