package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// cmdBigRead measures catch-up reads of one large stream: each of -conns
// readers reads the whole stream from offset -1, page by page (the server
// caps a response, 1 MiB for ours), again and again until -duration is over.
// With -file the target is a plain file behind Caddy's file_server (the
// ceiling): it is read in -chunk Range requests, the same pattern, and then
// also whole (reported as extra whole_file_mbps).
func cmdBigRead(args []string) error {
	fs := flag.NewFlagSet("bigread", flag.ExitOnError)
	var c common
	c.register(fs)
	path := fs.String("path", "/v1/stream/large", "stream (or file) path")
	file := fs.Bool("file", false, "target is a file: read it with Range requests")
	size := fs.Int64("size", 64<<20, "expected bytes per full read")
	chunk := fs.Int64("chunk", 1<<20, "Range size for -file")
	conns := fs.Int("conns", 2, "concurrent readers")
	duration := fs.Duration("duration", 10*time.Second, "measuring time")
	fs.Parse(args)
	if err := c.check(); err != nil {
		return err
	}
	if *conns < 1 || *conns > 256 || *duration <= 0 || *duration > 10*time.Minute {
		return errors.New("conns or duration out of range")
	}
	r := c.record()
	r.Unit = "MB/s"
	t0, _ := cpuTicks(c.pid)
	mbps, mb, lat, reqs, errs, note := readLoop(&c, *path, *file, false, *size, *chunk, *conns, *duration)
	r.Throughput = round(mbps, 1)
	if t1, ok := cpuTicks(c.pid); ok {
		r.CPUUsPerOp = cpuUsPer(t1-t0, mb)
	}
	r.P50Ms, r.P99Ms, r.MaxMs = lat.summary()
	r.P50Ms, r.P99Ms, r.MaxMs = round(r.P50Ms, 3), round(r.P99Ms, 3), round(r.MaxMs, 3)
	r.Requests, r.Errors, r.DurationS = reqs, errs, duration.Seconds()
	r.Note = note
	if *file && errs == 0 {
		whole, _, _, _, werrs, _ := readLoop(&c, *path, true, true, *size, *chunk, *conns, min(*duration, 3*time.Second))
		if werrs == 0 {
			r.Extra = map[string]float64{"whole_file_mbps": round(whole, 1)}
			r.Note = fmt.Sprintf("%.0f KiB Range requests; whole-file GETs: %.0f MB/s", float64(*chunk)/1024, whole)
		}
	}
	if reqs == 0 || errs > 0 {
		r.Status = "error"
	}
	return appendRecord(c.out, r)
}

func readLoop(c *common, path string, file, whole bool, size, chunk int64, conns int, d time.Duration) (mbps, mb float64, lat latencies, reqs, errs int64, note string) {
	client := newClient(conns, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), d+60*time.Second)
	defer cancel()
	u := c.base + path
	var bytes atomic.Int64
	var nreq, nerr atomic.Int64
	var mu sync.Mutex
	var firstErr string
	fail := func(msg string) {
		nerr.Add(1)
		mu.Lock()
		if firstErr == "" {
			firstErr = msg
		}
		mu.Unlock()
	}
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	per := make([]latencies, conns)
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pass := 0; pass < 1_000_000 && time.Now().Before(deadline); pass++ {
				var got int64
				offset := "-1"
				for page := 0; page < 1_000_000; page++ {
					var hdr map[string]string
					target := u + "?offset=" + offset
					if file {
						target = u
						if !whole {
							hdr = map[string]string{"Range": fmt.Sprintf("bytes=%d-%d", got, min(got+chunk, size)-1)}
						}
					}
					t0 := time.Now()
					st, h, n, err := do(ctx, client, "GET", target, hdr, nil)
					per[w] = append(per[w], time.Since(t0))
					nreq.Add(1)
					if err != nil {
						fail(err.Error())
						return
					}
					if st != 200 && st != 206 {
						fail(fmt.Sprintf("status %d", st))
						return
					}
					got += n
					bytes.Add(n)
					if file {
						if got >= size {
							break
						}
						continue
					}
					next := h.Get("Stream-Next-Offset")
					if h.Get("Stream-Up-To-Date") != "" || next == "" {
						break
					}
					if next == offset {
						fail("no progress at offset " + offset)
						return
					}
					offset = next
				}
				if got != size {
					fail(fmt.Sprintf("read %d bytes in a pass, want %d", got, size))
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, l := range per {
		lat = append(lat, l...)
	}
	mb = float64(bytes.Load()) / 1e6
	return mb / elapsed.Seconds(), mb, lat, nreq.Load(), nerr.Load(), firstErr
}
