package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary returns $DS_BIN, or skips the test when it is not set.
func binary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("DS_BIN")
	if bin == "" {
		t.Skip("DS_BIN is not set; set it to the durable-streams-server binary to run end-to-end tests")
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("DS_BIN: %v", err)
	}
	return abs
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lockedBuffer collects a process's output for assertions and failure logs.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// server is one running durable-streams-server process.
type server struct {
	t      *testing.T
	cmd    *exec.Cmd
	base   string // http://127.0.0.1:PORT
	output *lockedBuffer
	exited chan struct{}
}

// startProcess starts DS_BIN with args and stops it (SIGTERM, then SIGKILL)
// when the test ends. Its output is logged if the test fails.
func startProcess(t *testing.T, base string, env []string, args ...string) *server {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	dir := t.TempDir()
	// Keep Caddy's autosave/state out of $HOME.
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_DATA_HOME="+filepath.Join(dir, "data"))
	cmd.Env = append(cmd.Env, env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, base: base, output: out, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("server output:\n%s", tail(out.String(), 60))
		}
	})
	return s
}

// startCaddyfile writes caddyfile (with %d for the port) and runs the binary on it.
func startCaddyfile(t *testing.T, caddyfile string, env ...string) *server {
	t.Helper()
	port := freePort(t)
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(caddyfile, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startProcess(t, fmt.Sprintf("http://127.0.0.1:%d", port), env, "run", "--config", path, "--adapter", "caddyfile")
	s.waitHealthy(30 * time.Second)
	return s
}

func (s *server) pid() int { return s.cmd.Process.Pid }

func (s *server) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// waitHealthy polls GET /health until it answers 200.
func (s *server) waitHealthy(within time.Duration) {
	s.t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(within)
	for {
		if !s.alive() {
			s.t.Fatalf("server exited during startup:\n%s", tail(s.output.String(), 40))
		}
		resp, err := client.Get(s.base + "/health")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("GET /health did not answer 200 within %v (last error %v)", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *server) stop() {
	if !s.alive() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.t.Logf("server did not stop within 10s of SIGTERM; killing it")
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// threads reads Threads: from /proc/PID/status.
func (s *server) threads() int {
	s.t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid()))
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
	s.t.Fatalf("no Threads: line in /proc/%d/status", s.pid())
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

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
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
