package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// `durable-streams-server dev` starts a zero-config in-memory server: it
// prints a banner with its URL, the /v1/stream/* endpoint and in-memory
// storage, answers /health, serves streams, and stops on Ctrl-C.
func TestDevCommand(t *testing.T) {
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	srv := startProcess(t, "http://"+addr, nil, "dev", "--listen", addr)
	srv.waitHealthy(30 * time.Second)

	// The banner is printed once the server runs; give it a moment.
	urls := []string{fmt.Sprintf("http://localhost:%d", port), "http://" + addr}
	var banner string
	deadline := time.Now().Add(5 * time.Second)
	for {
		banner = srv.Output.String()
		if (strings.Contains(banner, urls[0]) || strings.Contains(banner, urls[1])) &&
			strings.Contains(banner, "/v1/stream/*") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev banner lacks the URL (%s or %s) or /v1/stream/*; output:\n%s", urls[0], urls[1], banner)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if low := strings.ToLower(banner); !strings.Contains(low, "in-memory") && !strings.Contains(low, "in memory") {
		t.Errorf("dev banner does not mention in-memory storage:\n%s", banner)
	}

	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(srv.base + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /health: %d; want 200", resp.StatusCode)
	}

	stream := srv.base + "/v1/stream/dev-test"
	req, _ := http.NewRequest(http.MethodPut, stream, strings.NewReader("hello dev"))
	req.Header.Set("Content-Type", "text/plain")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT %s: %d %q; want 201", stream, resp.StatusCode, body)
	}
	next := resp.Header.Get("Stream-Next-Offset")
	if next == "" {
		t.Errorf("PUT: no Stream-Next-Offset header")
	}

	resp, err = c.Get(stream + "?offset=-1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "hello dev" {
		t.Errorf("GET %s?offset=-1: %d %q; want 200 %q", stream, resp.StatusCode, body, "hello dev")
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("GET: Content-Type %q; want text/plain", ct)
	}
	if got := resp.Header.Get("Stream-Next-Offset"); got != next {
		t.Errorf("GET: Stream-Next-Offset %q; want %q (from PUT)", got, next)
	}

	// Ctrl-C stops it.
	if err := srv.Cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.Exited:
		t.Logf("dev server exited on SIGINT with %v", srv.Cmd.ProcessState)
	case <-time.After(10 * time.Second):
		t.Errorf("dev server did not exit within 10s of SIGINT")
	}
}
