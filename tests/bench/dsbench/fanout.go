package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// cmdFanout measures live delivery to many subscribers of one stream.
//
// It creates a fresh stream, connects -subs subscribers at its tail (SSE, or
// long-poll requests that are re-issued after every answer), waits until they
// are in place, reads the server's RSS and thread count, then makes -appends
// appends one after another. Each append carries a marker "#fanout-<i>#"; a
// subscriber stamps the time it sees the marker, and delivery latency is that
// time minus the time just before the append was sent (one process, one
// monotonic clock). The next append goes out once every subscriber has the
// previous one (or -deliver-timeout passed) plus -gap, so long-poll
// subscribers can re-register.
func cmdFanout(args []string) error {
	fs := flag.NewFlagSet("fanout", flag.ExitOnError)
	var c common
	c.register(fs)
	path := fs.String("path", "/v1/stream/fanout", "stream path (created fresh)")
	mode := fs.String("mode", "sse", "sse or longpoll")
	subs := fs.Int("subs", 5000, "subscribers (one connection each)")
	appends := fs.Int("appends", 10, "appends to deliver")
	dialConc := fs.Int("dial-concurrency", 64, "connection attempts in flight while connecting")
	client := fs.String("client", "raw", "subscribers: raw (sockets read by epoll loops) or http (net/http, a goroutine each)")
	proto := fs.String("proto", "h1", "h1: HTTP/1.1, a connection per subscriber; h2: TLS + HTTP/2 (https base), subscribers multiplexed over -h2-conns connections as browsers do (implies -client http)")
	h2Conns := fs.Int("h2-conns", 50, "h2: connections the subscribers share (subscriber s uses connection s mod N)")
	loops := fs.Int("loops", 2, "epoll loops (OS threads) reading the raw subscribers")
	poll := fs.Duration("poll", 250*time.Microsecond, "raw loops: look for ready sockets this often instead of blocking in epoll_wait (0 = block)")
	settle := fs.Duration("settle", 0, "pause after connecting, before measuring (default 0.5s + 0.2s per 1000 subscribers)")
	gap := fs.Duration("gap", 0, "pause after an append is delivered everywhere (default 50ms SSE, 250ms long-poll)")
	connectTimeout := fs.Duration("connect-timeout", 60*time.Second, "time allowed to connect every subscriber")
	deliverTimeout := fs.Duration("deliver-timeout", 5*time.Second, "time allowed to deliver one append everywhere")
	budget := fs.Duration("budget", 60*time.Second, "time allowed for the whole run (connecting, appends, deliveries); later appends are skipped")
	parkedMetric := fs.String("parked-metric", "", "diagnostic (long-poll): a Prometheus path on -base (e.g. /metrics) whose caddy_durable_streams_live_sessions{mode=\"long_poll\"} is read just before and just after each append (append_<i>_parked_before/after)")
	fs.Parse(args)
	if err := c.check(); err != nil {
		return err
	}
	if *mode != "sse" && *mode != "longpoll" {
		return fmt.Errorf("unknown -mode %q", *mode)
	}
	if *client != "raw" && *client != "http" {
		return fmt.Errorf("unknown -client %q", *client)
	}
	switch *proto {
	case "h1":
	case "h2":
		*client = "http"
		if !strings.HasPrefix(c.base, "https://") {
			return errors.New("-proto h2 needs an https -base")
		}
		if *h2Conns < 1 || *h2Conns > *subs {
			return errors.New("-h2-conns out of range (1..subs)")
		}
	default:
		return fmt.Errorf("unknown -proto %q", *proto)
	}
	if *subs < 1 || *subs > 50_000 || *appends < 1 || *appends > 1000 || *dialConc < 1 {
		return errors.New("subs, appends or dial-concurrency out of range")
	}
	if need := uint64(*subs + 64); nofileLimit() < need {
		return fmt.Errorf("RLIMIT_NOFILE is %d, need at least %d", nofileLimit(), need)
	}
	if *settle == 0 {
		*settle = 500*time.Millisecond + time.Duration(*subs)*200*time.Microsecond
	}
	if *gap == 0 {
		*gap = 50 * time.Millisecond
		if *mode == "longpoll" {
			*gap = 250 * time.Millisecond
		}
	}

	r := c.record()
	ctl := newClient(2, *deliverTimeout)
	ctx := context.Background()
	streamURL := c.base + *path
	hdr := map[string]string{"Content-Type": "text/plain"}
	if st, _, _, err := do(ctx, ctl, "PUT", streamURL, hdr, nil); err != nil || (st != 200 && st != 201) {
		return fail(&c, r, fmt.Sprintf("create %s: status %d %v", *path, st, err))
	}
	st, h, _, err := do(ctx, ctl, "GET", streamURL+"?offset=-1", nil, nil)
	if err != nil || st != 200 || h.Get("Stream-Next-Offset") == "" {
		return fail(&c, r, fmt.Sprintf("read tail of %s: status %d %v", *path, st, err))
	}
	startOffset := h.Get("Stream-Next-Offset")
	baseRSS, baseThreads, _ := procStats(c.pid)

	f := &fanout{
		url:       streamURL,
		mode:      *mode,
		start:     time.Now(),
		appendAt:  make([]atomic.Int64, *appends),
		delivered: make([]atomic.Int64, *appends),
		recv:      make([][]atomic.Int64, *subs),
	}
	sem := make(chan struct{}, *dialConc)
	dialer := &net.Dialer{Timeout: 15 * time.Second}
	f.clients = []*http.Client{{Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			defer func() { <-sem }()
			return dialer.DialContext(ctx, network, addr)
		},
		MaxIdleConns:        *subs + 16,
		MaxIdleConnsPerHost: *subs + 16,
		IdleConnTimeout:     120 * time.Second,
		DisableCompression:  true,
		ReadBufferSize:      4 << 10,
		WriteBufferSize:     4 << 10,
	}}}
	if *proto == "h2" {
		clients, err := h2Clients(ctx, streamURL, *h2Conns)
		if err != nil {
			return fail(&c, r, err.Error())
		}
		f.clients = clients
	}
	subCtx, cancelSubs := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for s := range *subs {
		f.recv[s] = make([]atomic.Int64, *appends)
	}
	if *client == "raw" {
		raw, err := newRawSubs(f, *mode == "sse")
		if err != nil {
			cancelSubs()
			return fail(&c, r, err.Error())
		}
		raw.poll = *poll
		wg.Add(1)
		go func() {
			defer wg.Done()
			raw.run(subCtx, *subs, *loops, *dialConc, startOffset)
		}()
	} else {
		for s := range *subs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if *mode == "sse" {
					f.sse(subCtx, s, startOffset)
				} else {
					f.longPoll(subCtx, s, startOffset)
				}
			}()
		}
	}
	defer func() {
		cancelSubs()
		waitTimeout(&wg, 15*time.Second)
		for _, cl := range f.clients {
			cl.CloseIdleConnections()
		}
	}()

	// Connect.
	budgetEnd := f.start.Add(*budget)
	connectDeadline := time.Now().Add(*connectTimeout)
	if connectDeadline.After(budgetEnd) {
		connectDeadline = budgetEnd
	}
	for f.ready.Load()+f.failed.Load() < int64(*subs) && time.Now().Before(connectDeadline) {
		time.Sleep(20 * time.Millisecond)
	}
	connectS := time.Since(f.start).Seconds()
	ready := f.ready.Load()
	if ready == 0 {
		return fail(&c, r, "no subscriber connected: "+f.errText())
	}
	time.Sleep(*settle)
	idleRSS, idleThreads, _ := procStats(c.pid)

	// Deliver.
	smp := startSampler(c.pid, 50*time.Millisecond)
	// Diagnostic: the server's CPU while delivering (the srv CPU column per
	// delivered piece, and deliver_server_cpu_ms).
	ticks0, ticksOK := cpuTicks(c.pid)
	var appendErr string
	made := 0
	postDone := make([]time.Duration, *appends) // diagnostic: each POST's own time
	parkedBefore := make([]float64, *appends)   // diagnostic: -parked-metric
	parkedAfter := make([]float64, *appends)
	repollLead := make([]time.Duration, *appends) // diagnostic: POST time minus the previous wave's last re-poll sent (from append 1)
	for i := range *appends {
		if time.Now().After(budgetEnd) {
			appendErr = fmt.Sprintf("only %d of %d appends made within the %v budget", made, *appends, *budget)
			break
		}
		body := payload(fmt.Sprintf("#fanout-%d#", i), 100)
		if *parkedMetric != "" {
			parkedBefore[i] = scrapeLongPolls(ctx, ctl, c.base+*parkedMetric)
		}
		f.appendAt[i].Store(int64(time.Since(f.start)))
		repollLead[i] = time.Duration(f.appendAt[i].Load() - f.lastRequestAt.Load())
		st, _, _, err := do(ctx, ctl, "POST", streamURL, hdr, body)
		postDone[i] = time.Duration(int64(time.Since(f.start)) - f.appendAt[i].Load())
		if *parkedMetric != "" {
			parkedAfter[i] = scrapeLongPolls(ctx, ctl, c.base+*parkedMetric)
		}
		if err != nil || (st != 200 && st != 204) {
			appendErr = fmt.Sprintf("append %d: status %d %v", i, st, err)
			break
		}
		made++
		deadline := time.Now().Add(*deliverTimeout)
		for f.delivered[i].Load() < ready && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
		}
		time.Sleep(*gap)
	}
	ticks1, ticksOK1 := cpuTicks(c.pid)
	peakRSS, peakThreads := smp.finish()

	// Collect, after stopping the subscribers.
	cancelSubs()
	waitTimeout(&wg, 15*time.Second)
	var lat latencies
	var delivered int64
	perAppendMax := make([]time.Duration, *appends) // diagnostic: which append sets the tail
	for s := range f.recv {
		for i := range f.recv[s] {
			if t := f.recv[s][i].Load(); t != 0 {
				d := time.Duration(t - f.appendAt[i].Load())
				lat = append(lat, d)
				perAppendMax[i] = max(perAppendMax[i], d)
				delivered++
			}
		}
	}
	expected := ready * int64(made)

	r.P50Ms, r.P99Ms, r.MaxMs = lat.summary()
	r.P50Ms, r.P99Ms, r.MaxMs = round(r.P50Ms, 2), round(r.P99Ms, 2), round(r.MaxMs, 2)
	r.Requests = delivered
	r.Errors = f.errs.Load() + (expected - delivered)
	r.RSSKiB = idleRSS
	if ticksOK && ticksOK1 && delivered > 0 {
		// The appends' phase: the deliveries, the appends and the gaps.
		r.CPUUsPerOp = cpuUsPer(ticks1-ticks0, float64(delivered))
	}
	if c.pid > 0 {
		r.RSSPerSubKiB = round((idleRSS-baseRSS)/float64(ready), 2)
		r.Threads = max(idleThreads, peakThreads)
	}
	r.Extra = map[string]float64{
		"subscribers":            float64(*subs),
		"connected":              float64(ready),
		"delivered":              float64(delivered),
		"expected":               float64(expected),
		"connect_s":              round(connectS, 2),
		"base_rss_kib":           baseRSS,
		"base_threads":           float64(baseThreads),
		"peak_rss_kib":           peakRSS,
		"peak_rss_per_sub_kib":   round((peakRSS-baseRSS)/float64(ready), 2),
		"subscriber_errors":      float64(f.errs.Load()),
		"subscriber_reconnects":  float64(f.reconnects.Load()),
		"subscribers_not_joined": float64(int64(*subs) - ready),
	}
	if ticksOK && ticksOK1 {
		// USER_HZ ticks (10 ms) from the first append until every answer
		// was in plus the last gap: what the appends' deliveries and the
		// re-polls cost the server.
		r.Extra["deliver_server_cpu_ms"] = float64(ticks1-ticks0) * 10
	}
	for i := range made {
		r.Extra[fmt.Sprintf("append_%d_post_ms", i)] = round(float64(postDone[i])/1e6, 2)
		r.Extra[fmt.Sprintf("append_%d_max_ms", i)] = round(float64(perAppendMax[i])/1e6, 2)
		if i > 0 && *mode == "longpoll" && *client == "raw" {
			r.Extra[fmt.Sprintf("append_%d_repoll_lead_ms", i)] = round(float64(repollLead[i])/1e6, 2)
		}
		if *parkedMetric != "" {
			r.Extra[fmt.Sprintf("append_%d_parked_before", i)] = parkedBefore[i]
			r.Extra[fmt.Sprintf("append_%d_parked_after", i)] = parkedAfter[i]
		}
	}
	clientNote := ", " + *client + " client"
	if *proto == "h2" {
		clientNote = fmt.Sprintf(", TLS + HTTP/2 over %d connections, net/http client", len(f.clients))
		r.Extra["h2_conns"] = float64(len(f.clients))
	}
	switch {
	case appendErr != "":
		r.Status, r.Note = "error", appendErr+fmt.Sprintf("; %d of %d deliveries of those arrived", delivered, expected)
	case ready < int64(*subs):
		r.Status, r.Note = "error", fmt.Sprintf("%d of %d subscribers connected: %s", ready, *subs, f.errText())
	case delivered < expected:
		r.Status, r.Note = "error", fmt.Sprintf("%d of %d deliveries arrived within %v each", delivered, expected, *deliverTimeout)
	default:
		r.Note = fmt.Sprintf("%d subscribers, %d appends%s; RSS/sub idle %.1f KiB, peak %.1f KiB", ready, *appends, clientNote, r.RSSPerSubKiB, r.Extra["peak_rss_per_sub_kib"])
	}
	return appendRecord(c.out, r)
}

func fail(c *common, r Record, note string) error {
	r.Status = "error"
	r.Note = oneLine(note, 300)
	if err := appendRecord(c.out, r); err != nil {
		return err
	}
	return errors.New(r.Note)
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

type fanout struct {
	url      string
	mode     string
	clients  []*http.Client // subscriber s uses clients[s % len]
	start    time.Time
	appendAt []atomic.Int64 // ns since start, stored just before each POST
	// lastRequestAt: ns since start when the raw client last sent a
	// long-poll request (diagnostic: append_<i>_repoll_lead_ms).
	lastRequestAt atomic.Int64
	delivered     []atomic.Int64 // subscribers that have append i

	recv [][]atomic.Int64 // [subscriber][append] ns since start, 0 = not yet

	ready, failed, errs, reconnects atomic.Int64
	firstErr                        atomic.Value
}

func (f *fanout) clientFor(s int) *http.Client { return f.clients[s%len(f.clients)] }

// h2Clients makes n clients of one HTTP/2 connection each, over TLS with
// the certificate of $DSBENCH_CA_FILE. Each is warmed up by one request
// before any subscriber starts, so that its subscribers share that one
// connection (a transport's first concurrent requests would each dial), and
// the request checks that the server speaks HTTP/2.
func h2Clients(ctx context.Context, streamURL string, n int) ([]*http.Client, error) {
	conf, err := clientTLS()
	if err != nil {
		return nil, err
	}
	if conf == nil {
		return nil, fmt.Errorf("-proto h2: set %s to the server's certificate", caEnv)
	}
	dialer := &net.Dialer{Timeout: 15 * time.Second}
	clients := make([]*http.Client, n)
	for i := range clients {
		tr := &http.Transport{
			Proxy:               nil,
			DialContext:         dialer.DialContext,
			TLSClientConfig:     conf.Clone(),
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     120 * time.Second,
			DisableCompression:  true,
		}
		clients[i] = &http.Client{Transport: tr}
		req, _ := http.NewRequestWithContext(ctx, "GET", streamURL+"?offset=-1", nil)
		resp, err := clients[i].Do(req)
		if err != nil {
			return nil, fmt.Errorf("h2 connection %d: %w", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			return nil, fmt.Errorf("h2 connection %d: server answered over %s, not HTTP/2", i, resp.Proto)
		}
	}
	return clients, nil
}

func (f *fanout) noteErr(err string) {
	f.errs.Add(1)
	f.firstErr.CompareAndSwap(nil, err)
}

func (f *fanout) errText() string {
	if v, ok := f.firstErr.Load().(string); ok {
		return v
	}
	return "no error seen"
}

var marker = []byte("#fanout-")

// stamp records, for every marker in p, that subscriber s has that append.
func (f *fanout) stamp(s int, p []byte) {
	now := int64(time.Since(f.start))
	for {
		k := bytes.Index(p, marker)
		if k < 0 {
			return
		}
		p = p[k+len(marker):]
		i, n := 0, 0
		for n < len(p) && p[n] >= '0' && p[n] <= '9' && n < 6 {
			i = i*10 + int(p[n]-'0')
			n++
		}
		if n == 0 || n >= len(p) || p[n] != '#' || i >= len(f.delivered) {
			continue
		}
		if f.recv[s][i].CompareAndSwap(0, now) {
			f.delivered[i].Add(1)
		}
	}
}

// resumeOffset returns the streamNextOffset of an SSE control event's data
// line, or offset for any other line: where a reconnect resumes.
func resumeOffset(line []byte, offset string) string {
	const key = `"streamNextOffset":"`
	if k := bytes.Index(line, []byte(key)); k >= 0 {
		rest := line[k+len(key):]
		if e := bytes.IndexByte(rest, '"'); e > 0 {
			return string(rest[:e])
		}
	}
	return offset
}

// joined marks subscriber s as in place (once).
func (f *fanout) joined(done *bool) {
	if !*done {
		*done = true
		f.ready.Add(1)
	}
}

// sse holds one SSE connection open, reconnecting from the last
// streamNextOffset of a control event if the server ends it.
func (f *fanout) sse(ctx context.Context, s int, offset string) {
	isReady := false
	for attempt := 0; attempt < 100 && ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			f.reconnects.Add(1)
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", f.url+"?offset="+url.QueryEscape(offset)+"&live=sse", nil)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := f.clientFor(s).Do(req)
		if err != nil {
			if !f.retryAfter(ctx, err, isReady) {
				return
			}
			continue
		}
		if resp.StatusCode != 200 {
			f.noteErr(fmt.Sprintf("SSE status %d", resp.StatusCode))
			resp.Body.Close()
			if !isReady {
				f.failed.Add(1)
			}
			return
		}
		f.joined(&isReady)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 8<<10), 4<<20)
		for sc.Scan() {
			line := sc.Bytes()
			f.stamp(s, line)
			offset = resumeOffset(line, offset)
		}
		resp.Body.Close()
	}
}

// longPoll re-issues long-poll requests from the last Stream-Next-Offset.
// A subscriber counts as in place once its first request is written.
func (f *fanout) longPoll(ctx context.Context, s int, offset string) {
	isReady := false
	cursor := ""
	trace := &httptrace.ClientTrace{WroteRequest: func(info httptrace.WroteRequestInfo) {
		if info.Err == nil {
			f.joined(&isReady)
		}
	}}
	for n := 0; n < 100_000 && ctx.Err() == nil; n++ {
		u := f.url + "?offset=" + url.QueryEscape(offset) + "&live=long-poll"
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		rctx := ctx
		if !isReady {
			rctx = httptrace.WithClientTrace(ctx, trace)
		}
		req, _ := http.NewRequestWithContext(rctx, "GET", u, nil)
		resp, err := f.clientFor(s).Do(req)
		if err != nil {
			if !f.retryAfter(ctx, err, isReady) {
				return
			}
			continue
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		resp.Body.Close()
		if err != nil {
			if ctx.Err() == nil {
				f.noteErr(err.Error())
			}
			continue
		}
		switch resp.StatusCode {
		case 200:
			f.stamp(s, body)
		case 204:
		default:
			f.noteErr(fmt.Sprintf("long-poll status %d", resp.StatusCode))
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if next := resp.Header.Get("Stream-Next-Offset"); next != "" {
			offset = next
		}
		if c := resp.Header.Get("Stream-Cursor"); c != "" {
			cursor = c
		}
	}
}

// retryAfter records a failed request of a subscriber. Before the
// subscriber is ready a failure is final (it counts as failed and the
// caller gives up); after that the caller reconnects after a short pause.
func (f *fanout) retryAfter(ctx context.Context, err error, isReady bool) bool {
	if ctx.Err() != nil {
		return true
	}
	f.noteErr(err.Error())
	if !isReady {
		f.failed.Add(1)
		return false
	}
	time.Sleep(100 * time.Millisecond)
	return true
}

// scrapeLongPolls reads caddy_durable_streams_live_sessions{mode="long_poll"}
// from a Prometheus text page; -1 if it cannot.
func scrapeLongPolls(ctx context.Context, c *http.Client, u string) float64 {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return -1
	}
	resp, err := c.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	const prefix = `caddy_durable_streams_live_sessions{mode="long_poll"} `
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, prefix) {
			var v float64
			if _, err := fmt.Sscan(line[len(prefix):], &v); err == nil {
				return v
			}
		}
	}
	return -1
}
