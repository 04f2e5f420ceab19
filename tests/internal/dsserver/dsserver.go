// Package dsserver runs the durable-streams-server binary (or any other
// program a test needs beside it) as a child of a Go test: on a free
// loopback port, with a generated Caddyfile, waiting until it answers, its
// output kept for assertions and logged when the test fails, and stopped
// when the test ends. The end-to-end, shared-cache and cluster suites under
// tests/ share it.
package dsserver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary returns $DS_BIN as an absolute path, or skips the test when it is
// not set; a DS_BIN that does not exist fails the test.
func Binary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("DS_BIN")
	if bin == "" {
		t.Skip("DS_BIN is not set; set it to the durable-streams-server binary to run these tests")
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

// RepoRoot is the checkout's root, for a test package two levels below it
// (tests/<suite>), where `go test` runs it.
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Output collects a process's output for assertions and failure logs; its
// zero value is ready, and it may be written while it is read.
type Output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// Process is a child started by a test.
type Process struct {
	Cmd    *exec.Cmd
	Output *Output         // its stdout and stderr
	Exited <-chan struct{} // closed once it has exited (Cmd.ProcessState is then set)
	t      testing.TB
}

// Start runs bin with args and stops it (SIGTERM, then SIGKILL after 10 s)
// when the test ends; its output is logged if the test failed. The child
// gets this process's environment with XDG_CONFIG_HOME and XDG_DATA_HOME in
// a fresh temporary directory (Caddy's autosave and state stay out of
// $HOME), then env, whose entries win.
func Start(t testing.TB, bin string, env []string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	out := &Output{}
	cmd.Stdout, cmd.Stderr = out, out
	dir := t.TempDir()
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_DATA_HOME="+filepath.Join(dir, "data"))
	cmd.Env = append(cmd.Env, env...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan struct{})
	p := &Process{Cmd: cmd, Output: out, Exited: exited, t: t}
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("%s output (last 60 lines):\n%s", filepath.Base(bin), Tail(out.String(), 60))
		}
	})
	return p
}

// RunArgs are the arguments that run the binary on a Caddyfile.
func RunArgs(caddyfile string) []string {
	return []string{"run", "--config", caddyfile, "--adapter", "caddyfile"}
}

// WriteCaddyfile writes text to a Caddyfile in a fresh temporary directory
// and returns its path.
func WriteCaddyfile(t testing.TB, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Server is a durable-streams-server serving plain HTTP on 127.0.0.1:Port.
type Server struct {
	*Process
	Port int
	Base string // http://127.0.0.1:Port
}

// StartServer runs bin on the Caddyfile that caddyfile writes for a free
// port and waits (30 s at most) until its /health answers 200; env as for
// Start.
func StartServer(t testing.TB, bin string, caddyfile func(port int) string, env ...string) *Server {
	t.Helper()
	port := FreePort(t)
	p := Start(t, bin, env, RunArgs(WriteCaddyfile(t, caddyfile(port)))...)
	s := &Server{Process: p, Port: port, Base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	s.WaitOK(nil, s.Base+"/health", 30*time.Second)
	return s
}

// Pid is the process id.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Alive says whether the process has not exited yet.
func (p *Process) Alive() bool {
	select {
	case <-p.Exited:
		return false
	default:
		return true
	}
}

// WaitOK polls GET url (with client; nil means a 1 s timeout) until it
// answers 200, failing the test if the process exits first or within
// passes.
func (p *Process) WaitOK(client *http.Client, url string, within time.Duration) {
	p.t.Helper()
	if client == nil {
		client = &http.Client{Timeout: time.Second}
	}
	deadline := time.Now().Add(within)
	for {
		if !p.Alive() {
			p.t.Fatalf("%s exited during startup:\n%s", filepath.Base(p.Cmd.Path), Tail(p.Output.String(), 40))
		}
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("GET %s did not answer 200 within %v (last error %v)", url, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits for the exit, killing the process if it is
// still there 10 s later.
func (p *Process) Stop() {
	if !p.Alive() {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.Exited:
	case <-time.After(10 * time.Second):
		p.t.Logf("%s did not stop within 10s of SIGTERM; killing it", filepath.Base(p.Cmd.Path))
		_ = p.Cmd.Process.Kill()
		<-p.Exited
	}
}

// TextRequest sends one request with a text/plain body (10 s at most) and
// fails the test unless it is answered with status want; it returns the
// response body.
func TextRequest(t testing.TB, method, url, body string, want int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", method, url, resp.StatusCode, data, want)
	}
	return string(data)
}
