package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// cmdWait polls base until any HTTP answer arrives (a 404 is fine: the
// listener is up), the process dies, or the timeout passes.
func cmdWait(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ExitOnError)
	var c common
	c.register(fs)
	timeout := fs.Duration("timeout", 30*time.Second, "give up after")
	fs.Parse(args)
	if err := c.check(); err != nil {
		return err
	}
	client := newClient(1, 2*time.Second)
	deadline := time.Now().Add(*timeout)
	var last error
	for time.Now().Before(deadline) {
		if c.pid > 0 {
			if err := syscall.Kill(c.pid, 0); err != nil {
				return fmt.Errorf("server process %d exited", c.pid)
			}
		}
		_, _, _, err := do(context.Background(), client, "GET", c.base+"/", nil, nil)
		if err == nil {
			return nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no answer from %s within %v: %v", c.base, *timeout, last)
}

// cmdSetup creates -count streams (path, or path-0 … path-N-1) and fills each
// with -bytes bytes in POSTs of -chunk bytes. With -verify it reads each
// stream back and checks the length.
func cmdSetup(args []string) error {
	fs := flag.NewFlagSet("setup", flag.ExitOnError)
	var c common
	c.register(fs)
	path := fs.String("path", "/v1/stream/bench", "stream path")
	count := fs.Int("count", 1, "number of streams")
	total := fs.Int64("bytes", 0, "bytes to append to each stream")
	chunk := fs.Int("chunk", 100, "bytes per append")
	ct := fs.String("ct", "text/plain", "stream content type")
	verify := fs.Bool("verify", false, "read every stream back and check its length")
	conns := fs.Int("conns", 8, "concurrent requests")
	timeout := fs.Duration("timeout", 120*time.Second, "overall time limit")
	fs.Parse(args)
	if err := c.check(); err != nil {
		return err
	}
	if *count < 1 || *count > 1_000_000 || *chunk < 1 || *chunk > 64<<20 {
		return errors.New("count or chunk out of range")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	client := newClient(*conns, 60*time.Second)
	paths := make([]string, *count)
	for i := range paths {
		paths[i] = *path
		if *count > 1 {
			paths[i] = fmt.Sprintf("%s-%d", *path, i)
		}
	}
	hdr := map[string]string{"Content-Type": *ct}
	body := payload("", *chunk)
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for range min(*conns, *count) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(paths)) || ctx.Err() != nil {
					return
				}
				u := c.base + paths[i]
				st, _, _, err := do(ctx, client, "PUT", u, hdr, nil)
				if err != nil || (st != 200 && st != 201 && st != 204) {
					fail(fmt.Errorf("PUT %s: status %d %v", paths[i], st, err))
					return
				}
				for left := *total; left > 0; {
					n := min(left, int64(*chunk))
					st, _, _, err := do(ctx, client, "POST", u, hdr, body[:n])
					if err != nil || (st != 200 && st != 204) {
						fail(fmt.Errorf("POST %s: status %d %v", paths[i], st, err))
						return
					}
					left -= n
				}
				if *verify {
					got, err := readAll(ctx, client, u)
					if err != nil {
						fail(fmt.Errorf("GET %s: %v", paths[i], err))
						return
					}
					if got != *total {
						fail(fmt.Errorf("GET %s: read back %d bytes, want %d", paths[i], got, *total))
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// readAll reads a stream from the start, following Stream-Next-Offset until
// Stream-Up-To-Date, and returns the number of body bytes.
func readAll(ctx context.Context, client *http.Client, u string) (int64, error) {
	offset := "-1"
	var total int64
	for range 100_000 {
		st, h, n, err := do(ctx, client, "GET", u+"?offset="+offset, nil, nil)
		if err != nil {
			return total, err
		}
		if st != 200 && st != 204 {
			return total, fmt.Errorf("status %d at offset %s", st, offset)
		}
		total += n
		next := h.Get("Stream-Next-Offset")
		if h.Get("Stream-Up-To-Date") != "" || next == "" {
			return total, nil
		}
		if next == offset && n == 0 {
			return total, fmt.Errorf("no progress at offset %s", offset)
		}
		offset = next
	}
	return total, errors.New("too many pages")
}

// cmdRecord writes a record without measuring anything.
func cmdRecord(args []string) error {
	fs := flag.NewFlagSet("record", flag.ExitOnError)
	var c common
	c.register(fs)
	status := fs.String("status", "unavailable", "ok, error, unavailable or skipped")
	note := fs.String("note", "", "why")
	fs.Parse(args)
	r := c.record()
	r.Status = *status
	r.Note = oneLine(*note, 300)
	return appendRecord(c.out, r)
}

// wrkSummary is the line our wrk scripts' done() prints (wrk/common.lua).
type wrkSummary struct {
	Requests   int64   `json:"requests"`
	DurationUS int64   `json:"duration_us"`
	Bytes      int64   `json:"bytes"`
	ErrConnect int64   `json:"err_connect"`
	ErrRead    int64   `json:"err_read"`
	ErrWrite   int64   `json:"err_write"`
	ErrStatus  int64   `json:"err_status"`
	ErrTimeout int64   `json:"err_timeout"`
	P50US      float64 `json:"p50_us"`
	P99US      float64 `json:"p99_us"`
	MaxUS      float64 `json:"max_us"`
	Pipeline   int     `json:"pipeline"`
}

// cmdWrkParse reads wrk's output on stdin and writes one record. A run with
// no completed request, or more than 1% failed ones, is an error; with
// -strict any failed request is.
func cmdWrkParse(args []string) error {
	fs := flag.NewFlagSet("wrkparse", flag.ExitOnError)
	var c common
	c.register(fs)
	strict := fs.Bool("strict", false, "any failed request makes the record an error")
	ticks := fs.Int64("cpu-ticks", 0, "server CPU ticks (USER_HZ) spent during the run, for CPU per request")
	commits := fs.String("commits", "", `"BEFORE;AFTER": the server's group-commit counters around the run (dsbench commits)`)
	fs.Parse(args)
	r := c.record()
	r.Unit = "req/s"
	var s *wrkSummary
	var tail []string
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "WRKJSON "); ok {
			s = new(wrkSummary)
			if err := json.Unmarshal([]byte(rest), s); err != nil {
				return fmt.Errorf("bad wrk summary: %v", err)
			}
			continue
		}
		tail = append(tail, line)
		if len(tail) > 5 {
			tail = tail[1:]
		}
	}
	if s == nil {
		r.Status = "error"
		r.Note = "wrk printed no summary: " + oneLine(strings.Join(tail, " | "), 300)
		return appendRecord(c.out, r)
	}
	r.Requests = s.Requests
	r.DurationS = float64(s.DurationUS) / 1e6
	if r.DurationS > 0 {
		r.Throughput = round(float64(s.Requests)/r.DurationS, 1)
	}
	r.P50Ms = round(s.P50US/1000, 3)
	r.P99Ms = round(s.P99US/1000, 3)
	r.MaxMs = round(s.MaxUS/1000, 3)
	r.Errors = s.ErrConnect + s.ErrRead + s.ErrWrite + s.ErrStatus + s.ErrTimeout
	r.CPUUsPerOp = cpuUsPer(*ticks, float64(s.Requests))
	if s.Pipeline > 1 {
		r.Extra = map[string]float64{"pipeline": float64(s.Pipeline)}
		r.Note = fmt.Sprintf("latency per batch of %d pipelined requests", s.Pipeline)
	}
	if before, after, ok := parseCommitReadings(*commits); ok {
		if note, extra, ok := commitNote(before, after, r.DurationS); ok {
			r.Note = strings.TrimPrefix(r.Note+"; "+note, "; ")
			if r.Extra == nil {
				r.Extra = map[string]float64{}
			}
			for k, v := range extra {
				r.Extra[k] = v
			}
		}
	}
	if r.Errors > 0 {
		r.Note = strings.TrimPrefix(r.Note+fmt.Sprintf("; %d failed (connect %d, read %d, write %d, non-2xx %d, timeout %d)",
			r.Errors, s.ErrConnect, s.ErrRead, s.ErrWrite, s.ErrStatus, s.ErrTimeout), "; ")
	}
	if s.Requests == 0 || float64(r.Errors) > 0.01*float64(s.Requests) || (*strict && r.Errors > 0) {
		r.Status = "error"
	}
	return appendRecord(c.out, r)
}

func oneLine(s string, limit int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return s
}
