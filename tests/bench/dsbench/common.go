package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Record is one measurement: one scenario against one server.
type Record struct {
	Scenario string `json:"scenario"`
	Server   string `json:"server"`
	// Status is "ok", "error" (ran but failed or saw errors), "unavailable"
	// (the server did not start or answered 5xx) or "skipped".
	Status string `json:"status"`
	Note   string `json:"note,omitempty"`

	// Primary figure: Throughput in Unit ("req/s" or "MB/s"). Fan-out has no
	// throughput; its primary figure is P99Ms.
	Throughput float64 `json:"throughput,omitempty"`
	Unit       string  `json:"unit,omitempty"`
	P50Ms      float64 `json:"p50_ms,omitempty"`
	P99Ms      float64 `json:"p99_ms,omitempty"`
	MaxMs      float64 `json:"max_ms,omitempty"`

	Requests  int64   `json:"requests,omitempty"`
	Errors    int64   `json:"errors,omitempty"`
	DurationS float64 `json:"duration_s,omitempty"`

	// Process figures of the server (from /proc), where measured.
	// CPUUsPerOp is the server's CPU time (user+system, all threads) per
	// request, or per MB for MB/s scenarios: a figure that stays meaningful
	// when other work on the machine steals time from the load test.
	CPUUsPerOp float64 `json:"cpu_us_per_op,omitempty"`

	RSSKiB       float64 `json:"rss_kib,omitempty"`
	RSSPerSubKiB float64 `json:"rss_per_sub_kib,omitempty"`
	Threads      int     `json:"threads,omitempty"`

	Extra map[string]float64 `json:"extra,omitempty"`
}

func appendRecord(path string, r Record) error {
	if path == "" {
		b, _ := json.Marshal(r)
		fmt.Println(string(b))
		return nil
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	return err
}

func readRecords(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

// common flags shared by the measuring subcommands.
type common struct {
	base     string
	server   string
	scenario string
	out      string
	pid      int
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.base, "base", "", "server base URL, e.g. http://127.0.0.1:18080 (loopback only)")
	fs.StringVar(&c.server, "server", "", "server label for the record")
	fs.StringVar(&c.scenario, "scenario", "", "scenario label for the record")
	fs.StringVar(&c.out, "out", "", "JSONL file to append the record to (stdout if empty)")
	fs.IntVar(&c.pid, "pid", 0, "server process id, for RSS and thread counts")
}

func (c *common) check() error {
	if c.base == "" {
		return errors.New("-base is required")
	}
	return checkLoopback(c.base)
}

func (c *common) record() Record {
	return Record{Scenario: c.scenario, Server: c.server, Status: "ok"}
}

// checkLoopback refuses any URL that is not on a loopback address: the
// benchmark must never load another machine.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing non-loopback URL %q", raw)
	}
	return nil
}

// newClient returns an HTTP/1.1 client that keeps up to conns connections
// open to the one host and never compresses or proxies.
func newClient(conns int, timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         dialer.DialContext,
		MaxIdleConns:        conns + 16,
		MaxIdleConnsPerHost: conns + 16,
		IdleConnTimeout:     60 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		WriteBufferSize:     8 << 10,
		ReadBufferSize:      16 << 10,
	}
	// Over https (the TLS fan-out scenarios) still HTTP/1.1: a TLS config
	// set here turns off net/http's automatic HTTP/2.
	if conf, err := clientTLS(); err == nil && conf != nil {
		tr.TLSClientConfig = conf
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// do sends one request and drains the response; it returns the status, the
// headers and the number of body bytes.
func do(ctx context.Context, c *http.Client, method, u string, hdr map[string]string, body []byte) (int, http.Header, int64, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, 0, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, 0, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header, n, err
}

// procStats reads VmRSS (KiB) and Threads of a process from /proc.
func procStats(pid int) (rssKiB float64, threads int, ok bool) {
	if pid <= 0 {
		return 0, 0, false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			v, _ := strconv.ParseFloat(f[1], 64)
			rssKiB = v
		case "Threads:":
			threads, _ = strconv.Atoi(f[1])
		}
	}
	return rssKiB, threads, true
}

// cpuTicks returns a process's user+system CPU time in clock ticks
// (USER_HZ, 100 on Linux) from /proc/<pid>/stat.
func cpuTicks(pid int) (int64, bool) {
	if pid <= 0 {
		return 0, false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(b)
	k := strings.LastIndexByte(s, ')')
	if k < 0 {
		return 0, false
	}
	f := strings.Fields(s[k+1:])
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return u + st, true
}

const userHZ = 100

// cpuUsPer converts a tick delta into microseconds per operation.
func cpuUsPer(ticks int64, ops float64) float64 {
	if ticks <= 0 || ops <= 0 {
		return 0
	}
	return round(float64(ticks)*1e6/userHZ/ops, 1)
}

// sampler polls a process's RSS and thread count and keeps the maxima.
type sampler struct {
	pid        int
	stop       chan struct{}
	done       chan struct{}
	maxRSS     float64
	maxThreads int
}

func startSampler(pid int, every time.Duration) *sampler {
	s := &sampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if rss, th, ok := procStats(pid); ok {
				s.maxRSS = max(s.maxRSS, rss)
				s.maxThreads = max(s.maxThreads, th)
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) finish() (maxRSS float64, maxThreads int) {
	close(s.stop)
	<-s.done
	return s.maxRSS, s.maxThreads
}

// latencies collects durations; percentiles sort a copy.
type latencies []time.Duration

func (l latencies) summary() (p50, p99, mx float64) {
	if len(l) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	pick := func(q float64) float64 {
		i := int(q*float64(len(s)-1) + 0.5)
		return ms(s[i])
	}
	return pick(0.50), pick(0.99), ms(s[len(s)-1])
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func round(v float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	if v < 0 {
		return -float64(int64(-v*p+0.5)) / p
	}
	return float64(int64(v*p+0.5)) / p
}

// payload returns n bytes of printable filler that starts with prefix.
func payload(prefix string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	copy(b, prefix)
	return b
}
