package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// cmdManyStreams creates -n streams with -conns concurrent PUTs, then appends
// 100-byte bodies to random ones of them for -duration. The record's
// throughput is the append rate; creation rate, RSS after creating and after
// appending, and RSS per stream are extras.
func cmdManyStreams(args []string) error {
	fs := flag.NewFlagSet("manystreams", flag.ExitOnError)
	var c common
	c.register(fs)
	path := fs.String("path", "/v1/stream/many", "stream path prefix (streams are <prefix>-<i>)")
	n := fs.Int("n", 100_000, "streams to create")
	conns := fs.Int("conns", 64, "concurrent requests")
	duration := fs.Duration("duration", 10*time.Second, "append phase")
	createTimeout := fs.Duration("create-timeout", 120*time.Second, "time allowed for creating")
	fs.Parse(args)
	if err := c.check(); err != nil {
		return err
	}
	if *n < 1 || *n > 10_000_000 || *conns < 1 || *conns > 1024 || *duration <= 0 || *duration > 10*time.Minute {
		return errors.New("n, conns or duration out of range")
	}
	r := c.record()
	r.Unit = "req/s"
	client := newClient(*conns, 30*time.Second)
	hdr := map[string]string{"Content-Type": "text/plain"}
	baseRSS, _, _ := procStats(c.pid)
	smp := startSampler(c.pid, 200*time.Millisecond)

	// Create.
	var next, created, createErrs atomic.Int64
	var firstErr atomic.Value
	noteErr := func(counter *atomic.Int64, msg string) {
		counter.Add(1)
		firstErr.CompareAndSwap(nil, msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *createTimeout)
	createLat := make([]latencies, *conns)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && createErrs.Load() < 100 {
				i := next.Add(1) - 1
				if i >= int64(*n) {
					return
				}
				t0 := time.Now()
				st, _, _, err := do(ctx, client, "PUT", fmt.Sprintf("%s%s-%d", c.base, *path, i), hdr, nil)
				if ctx.Err() != nil {
					return
				}
				createLat[w] = append(createLat[w], time.Since(t0))
				if err != nil || (st != 200 && st != 201) {
					noteErr(&createErrs, fmt.Sprintf("PUT status %d %v", st, err))
					continue
				}
				created.Add(1)
			}
		}()
	}
	wg.Wait()
	timedOut := ctx.Err() != nil
	cancel()
	createS := time.Since(start).Seconds()
	rssCreated, _, _ := procStats(c.pid)
	total := created.Load()
	if total == 0 {
		smp.finish()
		return fail(&c, r, "no stream created: "+fmt.Sprint(firstErr.Load()))
	}

	// Append to random streams. Only indices below `total` are used when
	// creation stopped early, and those may include a failed one: such
	// appends count as errors.
	var appends, appendErrs atomic.Int64
	appendLat := make([]latencies, *conns)
	body := payload("", 100)
	actx, acancel := context.WithTimeout(context.Background(), *duration+30*time.Second)
	defer acancel()
	ticks0, _ := cpuTicks(c.pid)
	start = time.Now()
	deadline := start.Add(*duration)
	limit := min(int64(*n), next.Load())
	for w := range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			for time.Now().Before(deadline) && appendErrs.Load() < 1000 {
				i := rng.Int64N(limit)
				t0 := time.Now()
				st, _, _, err := do(actx, client, "POST", fmt.Sprintf("%s%s-%d", c.base, *path, i), hdr, body)
				appendLat[w] = append(appendLat[w], time.Since(t0))
				if err != nil || (st != 200 && st != 204) {
					noteErr(&appendErrs, fmt.Sprintf("POST status %d %v", st, err))
					continue
				}
				appends.Add(1)
			}
		}()
	}
	wg.Wait()
	appendS := time.Since(start).Seconds()
	if ticks1, ok := cpuTicks(c.pid); ok {
		r.CPUUsPerOp = cpuUsPer(ticks1-ticks0, float64(appends.Load()+appendErrs.Load()))
	}
	rssAfter, threads, _ := procStats(c.pid)
	peakRSS, peakThreads := smp.finish()

	var alat, clat latencies
	for w := range *conns {
		alat = append(alat, appendLat[w]...)
		clat = append(clat, createLat[w]...)
	}
	r.Throughput = round(float64(appends.Load())/appendS, 1)
	r.P50Ms, r.P99Ms, r.MaxMs = alat.summary()
	r.P50Ms, r.P99Ms, r.MaxMs = round(r.P50Ms, 3), round(r.P99Ms, 3), round(r.MaxMs, 3)
	r.Requests = appends.Load()
	r.Errors = appendErrs.Load() + createErrs.Load()
	r.DurationS = round(appendS, 2)
	r.RSSKiB = rssAfter
	r.Threads = max(threads, peakThreads)
	cp50, cp99, _ := clat.summary()
	r.Extra = map[string]float64{
		"streams":            float64(total),
		"create_per_s":       round(float64(total)/createS, 1),
		"create_s":           round(createS, 2),
		"create_p50_ms":      round(cp50, 3),
		"create_p99_ms":      round(cp99, 3),
		"base_rss_kib":       baseRSS,
		"rss_created_kib":    rssCreated,
		"peak_rss_kib":       peakRSS,
		"rss_per_stream_kib": round((rssCreated-baseRSS)/float64(total), 3),
	}
	r.Note = fmt.Sprintf("%d streams created at %.0f/s (RSS %.0f MiB, %.2f KiB/stream); appends: RSS %.0f MiB",
		total, float64(total)/createS, rssCreated/1024, r.Extra["rss_per_stream_kib"], rssAfter/1024)
	switch {
	case timedOut || total < int64(*n):
		r.Status = "error"
		r.Note = fmt.Sprintf("created %d of %d streams in %.0fs (%v); ", total, *n, createS, firstErr.Load()) + r.Note
	case r.Errors > 0:
		r.Status = "error"
		r.Note = fmt.Sprintf("%d errors (%v); ", r.Errors, firstErr.Load()) + r.Note
	}
	return appendRecord(c.out, r)
}
