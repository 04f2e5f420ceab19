package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/durable-streams-server/durable-streams-server/tests/internal/dsserver"
)

// Restarts and upgrades refuse no connection (README, "Operations"): the
// listening socket belongs to something that outlives the server process
// (systemd's durable-streams.socket), which passes it as file descriptor 3.
// Here the test plays systemd: it holds the socket, starts the server with
// it (LISTEN_FDS=1, LISTEN_PID, DS_BIND=fd/3 as the unit sets them),
// restarts it (SIGTERM, wait, start the next one on the same socket) and
// then upgrades it (the same, from another copy of the binary) while clients
// append and read, each request on a new connection. Nothing may be
// refused or fail; the test reports the longest request and the blackout
// (the longest time without a completed request) of each.
//
// DS_HANDOVER_STREAMS streams exist on disk first (default 1,000; the
// restart benchmark, tests/ops/restart.sh, uses 100,000).

const handoverCaddyfile = `{
	admin off
	auto_https off
}

http://127.0.0.1:%d {
	bind "{$DS_BIND}"
	handle /health {
		respond "OK" 200
	}
	route /v1/stream/* {
		durable_streams {
			data_dir %q
		}
	}
}
`

func TestRestartKeepsTheListeningSocket(t *testing.T) {
	bin := binary(t)
	streams := 1000
	if v := os.Getenv("DS_HANDOVER_STREAMS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("DS_HANDOVER_STREAMS=%q: want a positive number", v)
		}
		streams = n
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	socket, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer socket.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	conf := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(handoverCaddyfile, port, filepath.Join(t.TempDir(), "data"))), 0o644); err != nil {
		t.Fatal(err)
	}
	// The upgrade's "new version": another copy of the binary.
	upgraded := filepath.Join(t.TempDir(), "durable-streams-server-new")
	copyFile(t, bin, upgraded)

	h := &handover{t: t, socket: socket, conf: conf, base: base}
	h.start(bin)

	// Streams on disk, then a steady load.
	setupClient := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	began := time.Now()
	createStreams(t, setupClient, base, streams)
	t.Logf("%d streams created in %v", streams, time.Since(began).Round(time.Millisecond))
	h.stop(false)
	h.start(bin) // recover them once, so the restarts below start from the same state

	load := newHandoverLoad(base, streams)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	load.run(ctx, 4, 2)
	load.await(t, 200, "before the restart")

	for _, step := range []struct{ what, binary string }{
		{"restart", bin},
		{"binary upgrade", upgraded},
	} {
		from := time.Now()
		down := h.stop(true)
		h.start(step.binary)
		up := time.Now()
		load.await(t, 200, "after the "+step.what)
		r := load.report(from, time.Now())
		t.Logf("%s with %d streams on disk: %d requests, %d refused, %d failed, %d resent after the old process closed their connection unanswered; longest request %v, blackout %v; old process gone after %v, new one serving %v after that",
			step.what, streams, r.requests, r.refused, r.failed, r.retried, r.longest.Round(time.Millisecond), r.blackout.Round(time.Millisecond),
			down.Round(time.Millisecond), up.Sub(from.Add(down)).Round(time.Millisecond))
		if r.refused != 0 || r.failed != 0 {
			t.Errorf("%s: %d connections refused, %d requests failed (first: %v); want none", step.what, r.refused, r.failed, r.firstError)
		}
	}
	cancel()
	load.wait()
	load.check(t, setupClient)
}

// handover plays systemd: it holds the socket and runs one server at a time.
type handover struct {
	t      *testing.T
	socket *os.File
	conf   string
	base   string
	cmd    *exec.Cmd
	out    *dsserver.Output
	exited chan struct{}
}

// start runs bin on the inherited socket and waits until it serves.
func (h *handover) start(bin string) {
	h.t.Helper()
	// LISTEN_PID must be the server's own pid: set it in a shell that then
	// execs the server (the pid stays), as systemd sets it before exec.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, bin, "run", "--config", h.conf, "--adapter", "caddyfile")
	cmd.ExtraFiles = []*os.File{h.socket} // fd 3
	dir := h.t.TempDir()
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "DS_BIND=fd/3",
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_DATA_HOME="+filepath.Join(dir, "data"))
	h.out = &dsserver.Output{}
	cmd.Stdout, cmd.Stderr = h.out, h.out
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.cmd, h.exited = cmd, make(chan struct{})
	exited, out := h.exited, h.out
	go func() { _ = cmd.Wait(); close(exited) }()
	h.t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if h.t.Failed() {
			h.t.Logf("server output:\n%s", tail(out.String(), 40))
		}
	})
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		select {
		case <-exited:
			h.t.Fatalf("server exited during startup:\n%s", tail(out.String(), 40))
		default:
		}
		// A stream request, not /health: it waits until storage is open.
		if resp, err := c.Head(h.base + "/v1/stream/__handover_probe"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNotFound {
				return
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("the server did not serve within 5m:\n%s", tail(out.String(), 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the process to exit; it returns how long
// that took.
func (h *handover) stop(checkExit bool) time.Duration {
	h.t.Helper()
	began := time.Now()
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		h.t.Fatal(err)
	}
	select {
	case <-h.exited:
	case <-time.After(time.Minute):
		h.t.Fatalf("the server did not exit within a minute of SIGTERM")
	}
	if code := h.cmd.ProcessState.ExitCode(); checkExit && code != 0 {
		h.t.Errorf("the server exited with %d after SIGTERM:\n%s", code, tail(h.out.String(), 20))
	}
	return time.Since(began)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// createStreams creates n streams named s-0 … s-(n-1), each with one line.
func createStreams(t *testing.T, c *http.Client, base string, n int) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				r, err := send(c, http.MethodPut, fmt.Sprintf("%s/v1/stream/s-%d", base, i), map[string]string{"Content-Type": "text/plain"}, []byte(fmt.Sprintf("stream %d\n", i)))
				if err == nil && r.status != http.StatusCreated {
					err = fmt.Errorf("PUT s-%d: %d %q", i, r.status, r.body)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// handoverLoad is the steady load: writers append numbered records to
// their own streams, readers read random streams, every request on a new
// connection (so each one is a connection the listener must accept).
type handoverLoad struct {
	base    string
	streams int
	client  *http.Client
	wg      sync.WaitGroup

	mu       sync.Mutex
	requests []loadRequest
	acked    [][]int // per writer: the seqs acknowledged, in order
	ok       atomic.Int64
}

type loadRequest struct {
	start, end time.Time
	err        error // nil: answered as expected
	refused    bool
	retries    int // connections closed before an answer, retried
}

func newHandoverLoad(base string, streams int) *handoverLoad {
	return &handoverLoad{base: base, streams: streams, client: &http.Client{
		Timeout:   2 * time.Minute,
		Transport: &http.Transport{DisableKeepAlives: true},
	}}
}

// do sends one request, again if the server closed the connection before
// answering: an old process that stops while a connection it accepted has
// not yet sent its request closes it unread (net/http's Server.Shutdown),
// and the client resends it to the next process, as clients do (appends
// carry producer headers, so a resent one is never applied twice).
func (l *handoverLoad) do(method, url string, hdr map[string]string, body []byte) (reply, int, error) {
	for retries := 0; ; retries++ {
		r, err := send(l.client, method, url, hdr, body)
		if retries < 3 && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
			continue
		}
		return r, retries, err
	}
}

func (l *handoverLoad) record(start time.Time, retries int, err error) {
	r := loadRequest{start: start, end: time.Now(), err: err, refused: errors.Is(err, syscall.ECONNREFUSED), retries: retries}
	l.mu.Lock()
	l.requests = append(l.requests, r)
	l.mu.Unlock()
	if err == nil {
		l.ok.Add(1)
	}
}

func (l *handoverLoad) run(ctx context.Context, writers, readers int) {
	l.acked = make([][]int, writers)
	for w := 0; w < writers; w++ {
		url := fmt.Sprintf("%s/v1/stream/writer-%d", l.base, w)
		if r, err := send(l.client, http.MethodPut, url, map[string]string{"Content-Type": "text/plain"}, nil); err != nil || r.status != http.StatusCreated {
			panic(fmt.Sprintf("PUT %s: %v %d", url, err, r.status))
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for seq := 0; ctx.Err() == nil; seq++ {
				start := time.Now()
				r, retries, err := l.do(http.MethodPost, url, producerHeaders("text/plain", "w", 0, seq), []byte(fmt.Sprintf("%d\n", seq)))
				if err == nil && r.status != http.StatusOK && (r.status != http.StatusNoContent || retries == 0) {
					err = fmt.Errorf("POST: %d %q", r.status, r.body)
				}
				l.record(start, retries, err)
				if err == nil {
					l.mu.Lock()
					l.acked[w] = append(l.acked[w], seq)
					l.mu.Unlock()
				} else {
					seq-- // retry the same seq: the producer deduplicates
				}
			}
		}()
	}
	for rd := 0; rd < readers; rd++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := rd; ctx.Err() == nil; i += 7919 {
				name := fmt.Sprintf("s-%d", i%l.streams)
				start := time.Now()
				r, retries, err := l.do(http.MethodGet, l.base+"/v1/stream/"+name+"?offset=-1", nil, nil)
				want := fmt.Sprintf("stream %d\n", i%l.streams)
				if err == nil && (r.status != http.StatusOK || string(r.body) != want) {
					err = fmt.Errorf("GET %s: %d %q; want 200 %q", name, r.status, r.body, want)
				}
				l.record(start, retries, err)
			}
		}()
	}
}

// await waits for n more successful requests.
func (l *handoverLoad) await(t *testing.T, n int64, what string) {
	t.Helper()
	target := l.ok.Load() + n
	deadline := time.Now().Add(5 * time.Minute)
	for l.ok.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the load made no progress", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *handoverLoad) wait() { l.wg.Wait() }

type loadReport struct {
	requests, refused, failed, retried int
	firstError                         error
	longest, blackout                  time.Duration
}

// report sums up the requests that ended in [from, to]: counts, the
// longest, and the longest time without a successful completion.
func (l *handoverLoad) report(from, to time.Time) loadReport {
	l.mu.Lock()
	defer l.mu.Unlock()
	var r loadReport
	var ends []time.Time
	for _, q := range l.requests {
		if q.end.Before(from) || q.end.After(to) {
			continue
		}
		r.requests++
		if q.retries > 0 {
			r.retried++
		}
		if d := q.end.Sub(q.start); d > r.longest {
			r.longest = d
		}
		switch {
		case q.refused:
			r.refused++
		case q.err != nil:
			r.failed++
		default:
			ends = append(ends, q.end)
			continue
		}
		if r.firstError == nil {
			r.firstError = fmt.Errorf("%w (sent %v after the step began, failed %v later)", q.err, q.start.Sub(from).Round(time.Millisecond), q.end.Sub(q.start).Round(time.Millisecond))
		}
	}
	sort.Slice(ends, func(i, j int) bool { return ends[i].Before(ends[j]) })
	prev := from
	for _, e := range ends {
		if gap := e.Sub(prev); gap > r.blackout {
			r.blackout = gap
		}
		prev = e
	}
	return r
}

// check reads every writer's stream: exactly its acknowledged records.
func (l *handoverLoad) check(t *testing.T, c *http.Client) {
	t.Helper()
	for w, seqs := range l.acked {
		var want strings.Builder
		for _, s := range seqs {
			fmt.Fprintf(&want, "%d\n", s)
		}
		resp, err := c.Get(fmt.Sprintf("%s/v1/stream/writer-%d?offset=-1", l.base, w))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != want.String() {
			t.Errorf("writer-%d holds %d bytes; want its %d acknowledged records exactly once (%d bytes)", w, len(got), len(seqs), want.Len())
		}
	}
}
