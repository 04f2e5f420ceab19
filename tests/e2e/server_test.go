package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/durable-streams-server/durable-streams-server/tests/internal/dsserver"
)

// The harness this package shares with tests/cache and tests/cluster,
// under the names its tests use.
var (
	binary   = dsserver.Binary // $DS_BIN, or the test is skipped
	freePort = dsserver.FreePort
	tail     = dsserver.Tail
)

// server is one running durable-streams-server process.
type server struct {
	*dsserver.Process
	t    *testing.T
	base string // http://127.0.0.1:PORT
}

// startProcess starts DS_BIN with args and stops it (SIGTERM, then SIGKILL)
// when the test ends. Its output is logged if the test fails.
func startProcess(t *testing.T, base string, env []string, args ...string) *server {
	t.Helper()
	return &server{Process: dsserver.Start(t, binary(t), env, args...), t: t, base: base}
}

// startCaddyfile writes caddyfile (with %d for the port) and runs the binary on it.
func startCaddyfile(t *testing.T, caddyfile string, env ...string) *server {
	t.Helper()
	s := dsserver.StartServer(t, binary(t), func(port int) string { return fmt.Sprintf(caddyfile, port) }, env...)
	return &server{Process: s.Process, t: t, base: s.Base}
}

// waitHealthy polls GET /health until it answers 200.
func (s *server) waitHealthy(within time.Duration) {
	s.t.Helper()
	s.WaitOK(nil, s.base+"/health", within)
}

// threads reads Threads: from /proc/PID/status.
func (s *server) threads() int {
	s.t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.Pid()))
	if err != nil {
		s.t.Fatalf("reading thread count: %v", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				s.t.Fatalf("bad Threads line %q", line)
			}
			return n
		}
	}
	s.t.Fatalf("no Threads: line in /proc/%d/status", s.Pid())
	return 0
}

// metrics scrapes GET /metrics and returns sample values keyed by the
// sample's text (`name{labels}`); ok is false if /metrics is not served
// (an unrouted path answers an empty 200, so no samples means no metrics).
func (s *server) metrics(client *http.Client) (map[string]float64, bool) {
	resp, err := client.Get(s.base + "/metrics")
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, false
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err() == nil && len(m) > 0
}

// sum adds the samples of metric name whose labels contain every one of want
// (each like `mode="sse"`); found is false if there is no such sample.
func sum(m map[string]float64, name string, want ...string) (total float64, found bool) {
	for k, v := range m {
		metric, labels, _ := strings.Cut(k, "{")
		if metric != name {
			continue
		}
		ok := true
		for _, w := range want {
			if !strings.Contains(labels, w) {
				ok = false
			}
		}
		if ok {
			total += v
			found = true
		}
	}
	return total, found
}

// eventually polls cond until it returns true or the deadline passes.
func eventually(ctx context.Context, every time.Duration, cond func() bool) bool {
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return cond()
		case <-time.After(every):
		}
	}
}

// raiseNoFile raises this process's open-file limit to at least want
// (children such as the server inherit it), or skips the test.
func raiseNoFile(t *testing.T, want uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= want {
		return
	}
	raised := lim
	raised.Cur = want
	if raised.Max < want {
		raised.Max = want // allowed for root only
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
		return
	}
	if lim.Max >= want {
		lim.Cur = want
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
			return
		}
	}
	t.Skipf("need %d open files but RLIMIT_NOFILE is %d (hard %d) and cannot be raised", want, lim.Cur, lim.Max)
}
