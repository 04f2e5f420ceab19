package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// cmdBodies measures what large request bodies cost the server: -n
// concurrent chunked POSTs (no Content-Length), each to its own stream,
// alternately -under bytes (within the server's max_append_size) and -over
// bytes (past it). It reports the server's peak RSS growth over the run
// (VmHWM after resetting it, or the sampled maximum where it cannot be
// reset), the RSS left 2 s after the last answer, and how many POSTs got
// which status (204 stored, 413 too large, 503 shed by the in-flight
// budget).
func cmdBodies(args []string) error {
	fs := flag.NewFlagSet("bodies", flag.ExitOnError)
	var c common
	c.register(fs)
	n := fs.Int("n", 16, "concurrent POSTs")
	under := fs.Int64("under", 100_000_000, "size of the POSTs within the limit")
	over := fs.Int64("over", 100<<20, "size of the POSTs past the limit")
	timeout := fs.Duration("timeout", 5*time.Minute, "bound on the whole run")
	fs.Parse(args)
	if err := c.check(); err != nil {
		return err
	}
	if *n < 1 || *n > 256 || *under < 0 || *over < 0 || *under > 1<<32 || *over > 1<<32 {
		return errors.New("n, under or over out of range")
	}
	if c.pid <= 0 {
		return errors.New("-pid is required: the figure is the server's memory")
	}
	r := c.record()
	r.Unit = "MiB"
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	client := newClient(*n, *timeout)

	for i := range *n {
		st, _, _, err := do(ctx, client, http.MethodPut, fmt.Sprintf("%s/v1/stream/bodies-%d", c.base, i),
			map[string]string{"Content-Type": "application/octet-stream"}, nil)
		if err != nil || (st != 201 && st != 200) {
			return fail(&c, r, fmt.Sprintf("creating stream %d: %d %v", i, st, err))
		}
	}

	time.Sleep(200 * time.Millisecond) // let the creates' garbage settle before the baseline
	rss0, _, _ := procStats(c.pid)
	hwmReset := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", c.pid), []byte("5"), 0) == nil
	s := startSampler(c.pid, 10*time.Millisecond)

	var mu sync.Mutex
	statuses := map[string]int{}
	var stored int64
	var firstErr string
	start := time.Now()
	var wg sync.WaitGroup
	for i := range *n {
		size := *under
		if i%2 == 1 {
			size = *over
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := chunkedPost(ctx, client, fmt.Sprintf("%s/v1/stream/bodies-%d", c.base, i), size)
			mu.Lock()
			defer mu.Unlock()
			key := fmt.Sprint(st)
			if err != nil {
				key = "error"
				if firstErr == "" {
					firstErr = err.Error()
				}
			}
			statuses[key]++
			if st == http.StatusNoContent {
				stored += size
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	maxRSS, _ := s.finish()
	peak := maxRSS
	if hwm, ok := vmHWM(c.pid); ok && hwmReset {
		peak = max(peak, hwm)
	}
	time.Sleep(2 * time.Second)
	rssAfter, _, _ := procStats(c.pid)

	growth := (peak - rss0) / 1024
	r.RSSKiB = peak - rss0
	r.Requests = int64(*n)
	r.DurationS = round(elapsed.Seconds(), 2)
	r.Extra = map[string]float64{
		"peak_rss_growth_mib": round(growth, 1),
		"stored_mib":          round(float64(stored)/(1<<20), 1),
		"rss_after_2s_mib":    round(rssAfter/1024, 1),
		"rss_before_mib":      round(rss0/1024, 1),
	}
	var parts []string
	keys := make([]string, 0, len(statuses))
	for k := range statuses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d×%s", statuses[k], k))
		if k != "error" {
			r.Extra["status_"+k] = float64(statuses[k])
		}
	}
	r.Note = fmt.Sprintf("%d chunked POSTs (%d B and %d B): %s; peak RSS +%.0f MiB with %.0f MiB stored; RSS %.0f MiB 2 s later (%.0f before)",
		*n, *under, *over, strings.Join(parts, " "), growth, float64(stored)/(1<<20), rssAfter/1024, rss0/1024)
	if firstErr != "" {
		r.Errors = int64(statuses["error"])
		r.Status = "error"
		r.Note += "; first error: " + firstErr
	}
	// 503s are the in-flight budget at work, not failures; only answers
	// other than 204, 413 and 503 are.
	for k, v := range statuses {
		if k != "204" && k != "413" && k != "503" && k != "error" {
			r.Status = "error"
			r.Errors += int64(v)
		}
	}
	return appendRecord(c.out, r)
}

// chunkedPost sends size bytes of filler without a Content-Length, so the
// client frames it chunked, and returns the status.
func chunkedPost(ctx context.Context, c *http.Client, url string, size int64) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, io.NopCloser(&filler{n: size}))
	if err != nil {
		return 0, err
	}
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// filler reads as n bytes of a repeating pattern.
type filler struct{ n, sent int64 }

func (f *filler) Read(b []byte) (int, error) {
	if f.sent >= f.n {
		return 0, io.EOF
	}
	k := int(min(int64(len(b)), f.n-f.sent))
	for i := range b[:k] {
		b[i] = 'a' + byte((f.sent+int64(i))%26)
	}
	f.sent += int64(k)
	return k, nil
}

// vmHWM reads a process's peak RSS (KiB) from /proc.
func vmHWM(pid int) (float64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "VmHWM:" {
			var v float64
			if _, err := fmt.Sscan(f[1], &v); err == nil {
				return v, true
			}
		}
	}
	return 0, false
}
