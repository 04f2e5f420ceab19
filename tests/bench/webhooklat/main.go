// Command webhooklat measures append→webhook-received latency on the real
// binary (`make bench-webhook`): it starts the server on a loopback port
// with webhook_allow_dev on, creates -subs streams each followed by its own
// webhook subscription, then -workers workers append to their own streams in
// turn, each waiting until the webhook naming that append's offset arrives.
// The receiver answers {"done": true}, which acks the wake, so every append
// makes one wake. Prints p50/p99/max; -out appends one JSON record.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("bin", "bin/durable-streams-server", "server binary")
	subs := flag.Int("subs", 1000, "subscriptions (one stream each)")
	appends := flag.Int("appends", 4000, "appends measured")
	workers := flag.Int("workers", 8, "concurrent appenders (each on its own streams)")
	storage := flag.String("storage", "mem", "mem or disk (data_dir, fsync always)")
	out := flag.String("out", "", "append a JSON record to this file")
	flag.Parse()
	if err := run(*bin, *subs, *appends, *workers, *storage, *out); err != nil {
		log.Fatal(err)
	}
}

type wake struct {
	Streams []struct {
		Path       string `json:"path"`
		TailOffset string `json:"tail_offset"`
	} `json:"streams"`
}

// arrivals tells waiters when a webhook listing their stream at or past
// their offset arrived.
type arrivals struct {
	mu   sync.Mutex
	tail map[string]string
	cond *sync.Cond
}

func (a *arrivals) record(path, tail string) {
	a.mu.Lock()
	if tail > a.tail[path] {
		a.tail[path] = tail
	}
	a.mu.Unlock()
	a.cond.Broadcast()
}

func (a *arrivals) wait(path, offset string, deadline time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.tail[path] < offset {
		if time.Now().After(deadline) {
			return false
		}
		a.cond.Wait()
	}
	return true
}

func run(bin string, subs, appends, workers int, storage, out string) error {
	arr := &arrivals{tail: map[string]string{}}
	arr.cond = sync.NewCond(&arr.mu)
	// Wake waiters now and then so their deadlines are checked.
	go func() {
		for range time.Tick(500 * time.Millisecond) {
			arr.cond.Broadcast()
		}
	}()
	recvLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	recv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var wk wake
		if err := json.NewDecoder(r.Body).Decode(&wk); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		for _, s := range wk.Streams {
			arr.record(s.Path, s.TailOffset)
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"done":true}`)
	})}
	go recv.Serve(recvLn)
	defer recv.Close()

	work, err := os.MkdirTemp("", "webhooklat")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	base, stop, err := startServer(bin, work, storage)
	if err != nil {
		return err
	}
	defer stop()

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers * 2}}
	do := func(method, url, ctype string, body []byte) (*http.Response, error) {
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, nil
	}
	hook := "http://" + recvLn.Addr().String() + "/hook"
	setupStart := time.Now()
	for i := 0; i < subs; i++ {
		path := fmt.Sprintf("wl/s%d", i)
		if resp, err := do("PUT", base+"/v1/stream/"+path, "text/plain", nil); err != nil || resp.StatusCode != 201 {
			return fmt.Errorf("create %s: %v %v", path, resp, err)
		}
		body := fmt.Sprintf(`{"type":"webhook","streams":[%q],"webhook":{"url":%q}}`, path, hook)
		if resp, err := do("PUT", fmt.Sprintf("%s/v1/stream/__ds/subscriptions/wl-%d", base, i), "application/json", []byte(body)); err != nil || resp.StatusCode != 201 {
			return fmt.Errorf("create subscription %d: %v %v", i, resp, err)
		}
	}
	log.Printf("%d streams and subscriptions created in %v", subs, time.Since(setupStart).Round(time.Millisecond))

	lat := make([]time.Duration, 0, appends)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	per := appends / workers
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < per; k++ {
				i := (w + k*workers) % subs
				path := fmt.Sprintf("wl/s%d", i)
				t0 := time.Now()
				resp, err := do("POST", base+"/v1/stream/"+path, "text/plain", []byte("x"))
				if err == nil && resp.StatusCode != 204 && resp.StatusCode != 200 {
					err = fmt.Errorf("append %s: %d", path, resp.StatusCode)
				}
				if err == nil && !arr.wait(path, resp.Header.Get("Stream-Next-Offset"), t0.Add(30*time.Second)) {
					err = fmt.Errorf("append to %s at %s never delivered", path, resp.Header.Get("Stream-Next-Offset"))
				}
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if err == nil {
					lat = append(lat, time.Since(t0))
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return firstErr
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	rec := map[string]any{
		"scenario": "webhook-latency", "storage": storage, "subscriptions": subs, "workers": workers,
		"deliveries": len(lat), "per_second": float64(len(lat)) / elapsed.Seconds(),
		"p50_ms": q(0.50).Seconds() * 1e3, "p99_ms": q(0.99).Seconds() * 1e3, "max_ms": lat[len(lat)-1].Seconds() * 1e3,
	}
	fmt.Printf("append→webhook received, %d subscriptions, %s, %d workers: %d deliveries, %.0f/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
		subs, storage, workers, len(lat), rec["per_second"], rec["p50_ms"], rec["p99_ms"], rec["max_ms"])
	if out != "" {
		f, err := os.OpenFile(out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		return json.NewEncoder(f).Encode(rec)
	}
	return nil
}

// startServer runs bin on a free loopback port and waits for /health.
func startServer(bin, work, storage string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	store := ""
	if storage == "disk" {
		store = fmt.Sprintf("data_dir %q\n\t\t\tfsync always", filepath.Join(work, "data"))
	}
	conf := fmt.Sprintf(`{
	admin off
	auto_https off
}
http://127.0.0.1:%d {
	handle /health {
		respond "OK" 200
	}
	route /v1/stream/* {
		durable_streams {
			webhook_allow_dev on
			%s
		}
	}
}
`, port, store)
	confPath := filepath.Join(work, "Caddyfile")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "run", "--config", confPath, "--adapter", "caddyfile")
	logf, err := os.Create(filepath.Join(work, "server.log"))
	if err != nil {
		return "", nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(work, "config"), "XDG_DATA_HOME="+filepath.Join(work, "xdg"))
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logf.Close()
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if resp, err := http.Get(base + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base, stop, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return "", nil, fmt.Errorf("server did not become healthy; see its log")
}
