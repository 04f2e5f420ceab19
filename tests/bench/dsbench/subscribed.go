package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// cmdSubscribed measures what pattern subscriptions cost appends: -n streams
// under one folder, then -rounds rounds of two phases of -duration each, in
// alternating order: appends of 100 B to random streams with no
// subscription, and the same with -subs pull-wake subscriptions whose pattern (<folder>/*)
// matches every stream. Before a subscribed phase the subscriptions are
// created (linked at the streams' tails) and woken once, so that the phase
// measures the steady state of subscriptions with a wake out and nobody
// claiming; after it they are deleted. The record's throughput is the median
// subscribed rate; extra.ratio is it over the median rate with none.
func cmdSubscribed(args []string) error {
	fs := flag.NewFlagSet("subscribed", flag.ExitOnError)
	var c common
	c.register(fs)
	root := fs.String("root", "/v1/stream", "the server's stream root")
	prefix := fs.String("path", "/v1/stream/subbench/s", "stream path prefix (streams are <prefix>-<i>)")
	n := fs.Int("n", 10_000, "streams")
	subs := fs.Int("subs", 1000, "pattern subscriptions in a subscribed phase")
	conns := fs.Int("conns", 16, "concurrent appenders")
	rounds := fs.Int("rounds", 3, "rounds (each: one phase without, one with subscriptions)")
	duration := fs.Duration("duration", 5*time.Second, "each phase")
	fs.Parse(args)
	if err := c.check(); err != nil {
		return err
	}
	rel := strings.TrimPrefix(*prefix, *root+"/")
	folder := path.Dir(rel)
	if rel == *prefix || folder == "." || folder == "/" {
		return errors.New("-path must be a stream path below -root in a folder, e.g. /v1/stream/subbench/s")
	}
	if *n < 1 || *n > 1_000_000 || *subs < 1 || *subs > 100_000 || *conns < 1 || *conns > 1024 ||
		*rounds < 1 || *rounds > 20 || *duration <= 0 || *duration > 10*time.Minute {
		return errors.New("n, subs, conns, rounds or duration out of range")
	}
	r := c.record()
	r.Unit = "req/s"
	client := newClient(*conns, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*rounds)*(2**duration+3*time.Minute)+5*time.Minute)
	defer cancel()
	text := map[string]string{"Content-Type": "text/plain"}
	jsonHdr := map[string]string{"Content-Type": "application/json"}
	bad := func(msg string) error {
		r.Status = "error"
		r.Note = msg
		return appendRecord(c.out, r)
	}

	// Streams, created concurrently.
	if err := parallel(ctx, *n, *conns, func(i int) error {
		st, _, _, err := do(ctx, client, "PUT", fmt.Sprintf("%s%s-%d", c.base, *prefix, i), text, nil)
		if err != nil || (st != 200 && st != 201) {
			return fmt.Errorf("PUT stream %d: status %d %v", i, st, err)
		}
		return nil
	}); err != nil {
		return bad(err.Error())
	}

	body := payload("", 100)
	var errs atomic.Int64
	var firstErr atomic.Value
	phase := func() (rate, cpuUs float64) {
		var appends atomic.Int64
		var wg sync.WaitGroup
		ticks0, _ := cpuTicks(c.pid)
		start := time.Now()
		deadline := start.Add(*duration)
		for w := range *conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
				for time.Now().Before(deadline) && errs.Load() < 1000 && ctx.Err() == nil {
					i := rng.IntN(*n)
					st, _, _, err := do(ctx, client, "POST", fmt.Sprintf("%s%s-%d", c.base, *prefix, i), text, body)
					if err != nil || (st != 200 && st != 204) {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, fmt.Sprintf("POST status %d %v", st, err))
						continue
					}
					appends.Add(1)
				}
			}()
		}
		wg.Wait()
		s := time.Since(start).Seconds()
		if ticks1, ok := cpuTicks(c.pid); ok {
			cpuUs = cpuUsPer(ticks1-ticks0, float64(appends.Load()))
		}
		return float64(appends.Load()) / s, cpuUs
	}

	var none, with, cpuNone, cpuWith []float64
	withoutSubscriptions := func() {
		rate, cpu := phase()
		none = append(none, rate)
		cpuNone = append(cpuNone, cpu)
	}
	// withSubscriptions creates the subscriptions, wakes them, measures, and
	// deletes them again.
	withSubscriptions := func(rd int) error {
		// Subscriptions, their wake stream, and one append that wakes them all.
		wake := fmt.Sprintf("%s-wake-%d", folder, rd)
		if st, _, _, err := do(ctx, client, "PUT", c.base+*root+"/"+wake, jsonHdr, nil); err != nil || st != 201 {
			return fmt.Errorf("PUT wake stream: status %d %v", st, err)
		}
		subURL := func(i int) string { return fmt.Sprintf("%s%s/__ds/subscriptions/bench-%d-%d", c.base, *root, rd, i) }
		spec := []byte(fmt.Sprintf(`{"type":"pull-wake","pattern":%q,"wake_stream":%q}`, folder+"/*", wake))
		if err := parallel(ctx, *subs, 4, func(i int) error {
			st, _, _, err := do(ctx, client, "PUT", subURL(i), jsonHdr, spec)
			if err != nil || st != 201 {
				return fmt.Errorf("PUT subscription %d: status %d %v", i, st, err)
			}
			return nil
		}); err != nil {
			return err
		}
		if st, _, _, err := do(ctx, client, "POST", fmt.Sprintf("%s%s-0", c.base, *prefix), text, body); err != nil || st != 204 {
			return fmt.Errorf("waking POST: status %d %v", st, err)
		}
		if err := awaitWakes(ctx, client, c.base+*root+"/"+wake, *subs, 2*time.Minute); err != nil {
			return err
		}
		rate, cpu := phase()
		with = append(with, rate)
		cpuWith = append(cpuWith, cpu)
		return parallel(ctx, *subs, 4, func(i int) error {
			st, _, _, err := do(ctx, client, "DELETE", subURL(i), nil, nil)
			if err != nil || st != 204 {
				return fmt.Errorf("DELETE subscription %d: status %d %v", i, st, err)
			}
			return nil
		})
	}
	// Rounds alternate their order (none then with, with then none, ...):
	// the rate drifts as the run goes on (on disk, streams outgrow their
	// inline bytes and move to segment files), and a fixed order would
	// charge that drift to the subscriptions.
	for rd := range *rounds {
		if rd%2 == 0 {
			withoutSubscriptions()
		}
		if err := withSubscriptions(rd); err != nil {
			return bad(err.Error())
		}
		if rd%2 == 1 {
			withoutSubscriptions()
		}
	}
	mNone, mWith := median(none), median(with)
	r.Throughput = round(mWith, 1)
	r.Errors = errs.Load()
	r.DurationS = round(2*float64(*rounds)*duration.Seconds(), 2)
	r.CPUUsPerOp = round(median(cpuWith), 1)
	r.Extra = map[string]float64{
		"streams":            float64(*n),
		"subscriptions":      float64(*subs),
		"rounds":             float64(*rounds),
		"none_req_s":         round(mNone, 1),
		"ratio":              round(mWith/mNone, 3),
		"cpu_us_per_op_none": round(median(cpuNone), 1),
	}
	r.Note = fmt.Sprintf("%d streams, %d conns; median of %d alternating rounds: %.0f req/s with %d pattern subscriptions, %.0f with none (ratio %.3f); per round none/with: %s / %s",
		*n, *conns, *rounds, mWith, *subs, mNone, mWith/mNone, rates(none), rates(with))
	if r.Errors > 0 {
		r.Status = "error"
		r.Note = fmt.Sprintf("%d errors (%v); ", r.Errors, firstErr.Load()) + r.Note
	}
	return appendRecord(c.out, r)
}

// parallel runs fn(0..n-1) on `workers` goroutines; the first error stops it.
func parallel(ctx context.Context, n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && first.Load() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					first.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		return err
	}
	return ctx.Err()
}

// awaitWakes reads the wake stream until it holds `want` wake events.
func awaitWakes(ctx context.Context, client *http.Client, url string, want int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	offset, seen := "-1", 0
	for time.Now().Before(deadline) && ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, "GET", url+"?offset="+offset, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("reading the wake stream: %w", err)
		}
		var sb strings.Builder
		_, err = io.Copy(&sb, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			return fmt.Errorf("reading the wake stream: status %d %v", resp.StatusCode, err)
		}
		seen += strings.Count(sb.String(), `"type":"wake"`)
		if seen >= want {
			return nil
		}
		if next := resp.Header.Get("Stream-Next-Offset"); next != "" && next != offset {
			offset = next
			continue
		}
		time.Sleep(50 * time.Millisecond) // nothing new yet: the dispatcher is at work
	}
	return fmt.Errorf("the wake stream holds %d of %d wake events after %v", seen, want, limit)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func rates(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(parts, ",")
}
