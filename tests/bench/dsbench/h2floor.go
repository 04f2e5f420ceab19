package main

// h2floor measures what Go's own HTTP/2 server costs per stream that a
// handler holds open, with nothing of Caddy's or ours in it: the floor
// under the fanout-*-h2 scenarios' RSS per subscriber (issue 21, item 4).
// net/http ends an HTTP/2 stream when its handler returns, so an SSE
// subscriber or a parked long-poll over HTTP/2 is a handler goroutine, its
// stream state and its response buffer for as long as it waits.
//
// The server runs in a child process (this binary, started with
// h2floorChildEnv set) so that its RSS is its own: a handler that sends
// the headers and one SSE piece, flushes, and waits for the client to go.
// The parent opens the streams over -conns TLS connections, -streams of
// them in all, waits until each has read its piece, settles as fanout does,
// and reports the child's RSS growth per stream.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
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
	"sync/atomic"
	"time"
)

// h2floorChildEnv, when set to the certificate and key paths (cert:key),
// makes this binary the h2floor server (see maybeH2FloorChild).
const h2floorChildEnv = "DSBENCH_H2FLOOR_SERVE"

// maybeH2FloorChild serves as the h2floor child when started as one, and
// then never returns; otherwise it returns at once.
func maybeH2FloorChild() {
	spec := os.Getenv(h2floorChildEnv)
	if spec == "" {
		return
	}
	certPath, keyPath, _ := strings.Cut(spec, ":")
	if err := serveH2Floor(certPath, keyPath, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "dsbench h2floor child: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// serveH2Floor listens on a loopback port, writes "addr\n" to out, and
// serves until its stdin closes (the parent's end). Each line read from
// stdin is answered on out with the number of handlers holding a stream
// right then, so the parent measures only once all of them are held.
func serveH2Floor(certPath, keyPath string, out io.Writer) error {
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return fmt.Errorf("load certificate: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var held atomic.Int64
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, "data: floor\n\n")
			http.NewResponseController(w).Flush()
			held.Add(1)
			defer held.Add(-1)
			<-r.Context().Done()
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}},
	}
	go srv.ServeTLS(ln, "", "")
	fmt.Fprintln(out, ln.Addr().String())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() { // until the parent closes our stdin or exits
		fmt.Fprintln(out, held.Load())
	}
	return srv.Close()
}

// h2FloorResult is one measurement.
type h2FloorResult struct {
	Streams     int     // streams that read their piece
	BaseRSSKiB  float64 // the child's RSS before the first stream
	IdleRSSKiB  float64 // and with every stream open, after settling
	PerStreamKB float64 // (idle - base) / streams
}

// measureH2Floor starts the child server (exe), opens streams over conns
// connections and returns the child's RSS per open stream.
func measureH2Floor(exe string, streams, conns int, settle, timeout time.Duration) (h2FloorResult, error) {
	var res h2FloorResult
	if streams < 1 || conns < 1 || conns > streams {
		return res, errors.New("need 1 <= conns <= streams")
	}
	dir, err := os.MkdirTemp("", "dsbench-h2floor-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := cmdGenCert([]string{"-cert", certPath, "-key", keyPath}); err != nil {
		return res, fmt.Errorf("certificate: %w", err)
	}

	child := exec.Command(exe)
	child.Env = append(os.Environ(), h2floorChildEnv+"="+certPath+":"+keyPath)
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		return res, err
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		return res, err
	}
	if err := child.Start(); err != nil {
		return res, fmt.Errorf("start the server: %w", err)
	}
	defer func() {
		stdin.Close()
		child.Process.Kill()
		child.Wait()
	}()
	answers := bufio.NewReader(stdout)
	line, err := answers.ReadString('\n')
	if err != nil {
		return res, fmt.Errorf("the server's address: %w", err)
	}
	addr := strings.TrimSpace(line)
	heldNow := func() (int, error) {
		if _, err := io.WriteString(stdin, "held\n"); err != nil {
			return 0, err
		}
		line, err := answers.ReadString('\n')
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(strings.TrimSpace(line))
	}
	time.Sleep(200 * time.Millisecond) // let the runtime's start-up settle
	base, _, ok := procStats(child.Process.Pid)
	if !ok {
		return res, errors.New("cannot read the server's RSS")
	}
	res.BaseRSSKiB = base

	roots, err := certPool(certPath)
	if err != nil {
		return res, err
	}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var ready, failed atomic.Int64
	var firstErr sync.Once
	var errText string
	var wg sync.WaitGroup
	for c := 0; c < conns; c++ {
		// One transport per connection: HTTP/2 multiplexes its streams.
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: roots},
			ForceAttemptHTTP2: true,
			MaxConnsPerHost:   1,
		}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr}
		n := streams / conns
		if c < streams%conns {
			n++
		}
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/floor", nil)
				resp, err := client.Do(req)
				if err == nil {
					defer resp.Body.Close()
					if resp.ProtoMajor != 2 {
						err = fmt.Errorf("got %s, want HTTP/2", resp.Proto)
					} else {
						_, err = bufio.NewReader(resp.Body).ReadString('\n')
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.Do(func() { errText = err.Error() })
					return
				}
				ready.Add(1)
				<-ctx.Done()
			}()
		}
	}
	for ready.Load()+failed.Load() < int64(streams) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	if failed.Load() > 0 || ready.Load() < int64(streams) {
		cancel()
		wg.Wait()
		return res, fmt.Errorf("%d of %d streams open (%d failed: %s)", ready.Load(), streams, failed.Load(), errText)
	}
	time.Sleep(settle)
	idle, _, _ := procStats(child.Process.Pid)
	n, err := heldNow()
	cancel()
	if err != nil {
		wg.Wait()
		return res, fmt.Errorf("ask the server: %w", err)
	}
	if n != streams {
		wg.Wait()
		return res, fmt.Errorf("the server held %d of %d streams when measured", n, streams)
	}
	wg.Wait()
	res.Streams = streams
	res.IdleRSSKiB = idle
	res.PerStreamKB = round((idle-base)/float64(streams), 2)
	return res, nil
}

// cmdH2Floor prints the floor.
func cmdH2Floor(args []string) error {
	fs := flag.NewFlagSet("h2floor", flag.ExitOnError)
	streams := fs.Int("streams", 5000, "HTTP/2 streams held open")
	conns := fs.Int("conns", 50, "TLS connections they share")
	settle := fs.Duration("settle", 0, "pause once all are open, before measuring (default as fanout: 0.5s + 0.2s per 1000 streams)")
	timeout := fs.Duration("timeout", 120*time.Second, "give up after")
	fs.Parse(args)
	if *settle == 0 {
		*settle = 500*time.Millisecond + time.Duration(*streams)*200*time.Microsecond
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	res, err := measureH2Floor(exe, *streams, *conns, *settle, *timeout)
	if err != nil {
		return err
	}
	fmt.Printf("net/http HTTP/2 server, a handler holding each stream: %d streams on %d TLS connections, RSS %.0f -> %.0f KiB, %.2f KiB per stream\n",
		res.Streams, *conns, res.BaseRSSKiB, res.IdleRSSKiB, res.PerStreamKB)
	return nil
}
