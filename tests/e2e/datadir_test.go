package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Operating a data_dir: one server per directory, reload under load,
// startup time with many streams, and a full disk.

// (a) A second server on a data_dir that a running server holds is refused,
// with an error naming the directory, and the first server is unaffected.
func TestDataDirSecondServerRefused(t *testing.T) {
	binary(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	first := newNode(t, dataDir, "fsync always")
	first.start()
	r := mustSend(t, first.client, http.MethodPut, first.url("mine"), map[string]string{"Content-Type": "text/plain"}, []byte("first\n"))
	if r.status != http.StatusCreated {
		t.Fatalf("PUT: %d %q", r.status, r.body)
	}

	second := newNode(t, dataDir, "fsync always")
	s := second.launch()
	select {
	case <-s.Exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("a second server on the same data_dir was still running after 30s; want it refused:\n%s", tail(s.Output.String(), 20))
	}
	out := s.Output.String()
	code := s.Cmd.ProcessState.ExitCode()
	if code == 0 {
		t.Errorf("the second server exited 0; want non-zero")
	}
	if !strings.Contains(out, dataDir) || !strings.Contains(strings.ToLower(out), "lock") {
		t.Errorf("the second server's error should name %s and say it is locked:\n%s", dataDir, tail(out, 20))
	}
	t.Logf("second server: exit %d: %s", code, firstLineWith(out, "lock"))

	// The first one carries on.
	r = mustSend(t, first.client, http.MethodPost, first.url("mine"), map[string]string{"Content-Type": "text/plain"}, []byte("still mine\n"))
	if r.status != http.StatusNoContent {
		t.Errorf("POST to the first server after the refused start: %d %q", r.status, r.body)
	}
	if got := readStream(t, first.client, first.url("mine")).data; string(got) != "first\nstill mine\n" {
		t.Errorf("first server reads %q", got)
	}
}

// (b) `reload` while producers append: the new config shares the open
// data_dir (no "locked" error), no append fails, and the data is intact.
func TestDataDirReloadUnderLoad(t *testing.T) {
	bin := binary(t)
	adminPort := freePort(t)
	admin := fmt.Sprintf("127.0.0.1:%d", adminPort)
	n := newNode(t, filepath.Join(t.TempDir(), "data"), "fsync always\n\t\t\tlong_poll_timeout 30s")
	n.global = "admin " + admin
	n.writeConfig()
	n.start()

	const writers = 4
	for w := 0; w < writers; w++ {
		if r := mustSend(t, n.client, http.MethodPut, n.url(fmt.Sprintf("reload-%d", w)), map[string]string{"Content-Type": "text/plain"}, nil); r.status != http.StatusCreated {
			t.Fatalf("PUT: %d %q", r.status, r.body)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stop atomic.Bool
	acked := make([]atomic.Int64, writers)
	var connErrors, retriedDup atomic.Int64
	var firstConnErr atomic.Value
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url, id := n.url(fmt.Sprintf("reload-%d", w)), fmt.Sprintf("w%d", w)
			for seq := 0; !stop.Load(); seq++ {
				body := []byte(fmt.Sprintf("%s:%06d\n", id, seq))
				for attempt := 1; ; attempt++ {
					r, err := send(n.client, http.MethodPost, url, producerHeaders("text/plain", id, 0, seq), body)
					if err != nil {
						// A connection closed by the reload: retry the same seq.
						connErrors.Add(1)
						firstConnErr.CompareAndSwap(nil, err.Error())
						if attempt > 20 || ctx.Err() != nil {
							errs <- fmt.Errorf("%s seq %d: %d attempts, last %v", id, seq, attempt, err)
							return
						}
						select {
						case <-ctx.Done():
						case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
						}
						continue
					}
					if r.status == http.StatusNoContent && attempt > 1 {
						retriedDup.Add(1)
					} else if r.status != http.StatusOK {
						errs <- fmt.Errorf("%s seq %d (attempt %d): %d %q", id, seq, attempt, r.status, r.body)
						return
					}
					break
				}
				acked[w].Store(int64(seq + 1))
			}
		}()
	}
	progress := func(what string) {
		t.Helper()
		var marks [writers]int64
		for w := range marks {
			marks[w] = acked[w].Load()
		}
		if !eventually(ctx, 5*time.Millisecond, func() bool {
			for w := range marks {
				if acked[w].Load() < marks[w]+50 && len(errs) == 0 {
					return false
				}
			}
			return true
		}) {
			t.Fatalf("%s: writers made no progress", what)
		}
	}

	progress("before the first reload")
	reload := func(what string) {
		t.Helper()
		out, err := exec.CommandContext(ctx, bin, "reload", "--config", n.confPath, "--adapter", "caddyfile", "--address", admin, "--force").CombinedOutput()
		if err != nil {
			t.Fatalf("reload (%s): %v\n%s", what, err, out)
		}
	}
	reload("same config")
	progress("after the first reload")
	n.handler = "fsync always\n\t\t\tlong_poll_timeout 20s"
	n.writeConfig()
	reload("long_poll_timeout changed")
	progress("after the second reload")
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("append failed: %v", err)
	}
	if !n.srv.Alive() {
		t.Fatalf("the server exited during the reloads")
	}

	total := int64(0)
	for w := 0; w < writers; w++ {
		data := readStream(t, n.client, n.url(fmt.Sprintf("reload-%d", w))).data
		var want bytes.Buffer
		for seq := int64(0); seq < acked[w].Load(); seq++ {
			fmt.Fprintf(&want, "w%d:%06d\n", w, seq)
		}
		if !bytes.Equal(data, want.Bytes()) {
			t.Errorf("reload-%d: %d bytes %q; want %d bytes of records 0..%d exactly once", w, len(data), clip(data), want.Len(), acked[w].Load()-1)
		}
		total += acked[w].Load()
	}
	log := n.srv.Output.String()
	if strings.Contains(strings.ToLower(log), "locked") {
		t.Errorf("the server log mentions \"locked\":\n%s", firstLineWith(log, "locked"))
	}
	// Each reload provisioned a handler on the open engine.
	if shared := strings.Count(log, `"shared":true`); shared < 2 {
		t.Errorf("the log shows %d handlers provisioned on the already open engine; want 2 (one per reload):\n%s", shared, tail(log, 30))
	}
	t.Logf("2 reloads under load: %d appends acknowledged by %d producers, %d connection errors retried (%d of them answered 204; first error: %v)",
		total, writers, connErrors.Load(), retriedDup.Load(), firstConnErr.Load())
}

// (c) Startup with many streams: N streams with data (DS_E2E_STARTUP_STREAMS,
// default 5,000), kill -9, then time from process start to /health and to
// the last stream answering HEAD.
func TestDataDirStartupWithManyStreams(t *testing.T) {
	binary(t)
	count := 5000
	if v := os.Getenv("DS_E2E_STARTUP_STREAMS"); v != "" {
		c, err := strconv.Atoi(v)
		if err != nil || c < 1 {
			t.Fatalf("DS_E2E_STARTUP_STREAMS=%q: want a positive number", v)
		}
		count = c
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	// Created under fsync off (fast; a process crash loses nothing
	// acknowledged either way), restarted under fsync always. Every stream
	// gets its own segment file (inline_stream_size 0): the startup that
	// scans the most directories.
	n := newNode(t, dataDir, "fsync off\n\t\t\tinline_stream_size 0")
	n.start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	createStart := time.Now()
	const workers = 16
	var next atomic.Int64
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(count) || ctx.Err() != nil {
					return
				}
				r, err := send(n.client, http.MethodPut, n.url(fmt.Sprintf("many/%07d", i)), map[string]string{"Content-Type": "text/plain"}, []byte(fmt.Sprintf("stream %d\n", i)))
				if err == nil && r.status != http.StatusCreated {
					err = fmt.Errorf("PUT many/%07d: %d %q", i, r.status, r.body)
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
	created := time.Since(createStart)

	n.kill()
	n.handler = "fsync always\n\t\t\tinline_stream_size 0"
	n.writeConfig()
	start := time.Now()
	s := n.launch()
	health := &http.Client{Timeout: time.Second}
	var toHealth time.Duration
	for {
		if !s.Alive() {
			t.Fatalf("server exited during startup:\n%s", tail(s.Output.String(), 30))
		}
		resp, err := health.Get(n.base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				toHealth = time.Since(start)
				break
			}
		}
		if time.Since(start) > 10*time.Minute {
			t.Fatalf("/health did not answer within 10 minutes (last error %v)", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	last := n.url(fmt.Sprintf("many/%07d", count-1))
	var toHead time.Duration
	for {
		r, err := send(health, http.MethodHead, last, nil, nil)
		if err == nil && r.status == http.StatusOK {
			toHead = time.Since(start)
			break
		}
		if err == nil && r.status == http.StatusNotFound {
			t.Fatalf("HEAD of the last stream after the restart: 404")
		}
		if time.Since(start) > 10*time.Minute {
			t.Fatalf("HEAD of the last stream did not answer 200 within 10 minutes (%v, %+v)", err, r.status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("%d streams created in %v (%.0f/s); after kill -9, restart with fsync always: /health after %v, HEAD of the last stream 200 after %v",
		count, created.Round(time.Millisecond), float64(count)/created.Seconds(), toHealth.Round(time.Millisecond), toHead.Round(time.Millisecond))

	// A sample of streams, first and last included, reads back.
	for _, i := range []int{0, 1, count / 3, count / 2, count - 2, count - 1} {
		if i < 0 {
			continue
		}
		want := fmt.Sprintf("stream %d\n", i)
		if got := readStream(t, n.client, n.url(fmt.Sprintf("many/%07d", i))).data; string(got) != want {
			t.Errorf("many/%07d reads %q; want %q", i, got, want)
		}
	}
	if dirs := len(segmentDirs(t, dataDir)); dirs != count {
		t.Errorf("segments/ has %d stream directories; want %d", dirs, count)
	}
	stopping := time.Now()
	n.terminate()
	t.Logf("clean shutdown (SIGTERM) took %v", time.Since(stopping).Round(time.Millisecond))
}

// (d) A full disk: an append that does not fit gets 507 with a message and
// nothing acknowledged is lost; once even the metadata cannot be committed,
// writes answer 507 too, or succeed where they still fit: a full disk is
// not fatal (README, Durability; diskfull_test.go has the recovery); reads
// and HEAD go on throughout, and a restart on the still-full file system
// serves everything acknowledged.
func TestDataDirDiskFull(t *testing.T) {
	binary(t)
	if runtime.GOOS != "linux" {
		t.Skip("mounts a tmpfs")
	}
	mnt := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a 4 MiB tmpfs (needs privilege): %v: %s", err, bytes.TrimSpace(out))
	}
	// Registered before the server starts, so it runs after the server stops.
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})

	n := newNode(t, filepath.Join(mnt, "data"), "fsync always")
	n.start()
	c := n.client
	octets := map[string]string{"Content-Type": "application/octet-stream"}
	text := map[string]string{"Content-Type": "text/plain"}
	want := map[string][]byte{} // every acknowledged byte, by stream
	create := func(name string, hdr map[string]string, body []byte) reply {
		t.Helper()
		r := mustSend(t, c, http.MethodPut, n.url(name), hdr, body)
		if r.status == http.StatusCreated {
			want[name] = append([]byte{}, body...)
		}
		return r
	}
	appendTo := func(name string, hdr map[string]string, body []byte) reply {
		t.Helper()
		r := mustSend(t, c, http.MethodPost, n.url(name), hdr, body)
		if r.status == http.StatusNoContent {
			want[name] = append(want[name], body...)
		}
		return r
	}
	if r := create("fill", octets, nil); r.status != http.StatusCreated {
		t.Fatalf("PUT: %d %q", r.status, r.body)
	}
	if r := create("small", text, []byte("small and early\n")); r.status != http.StatusCreated {
		t.Fatalf("PUT: %d %q", r.status, r.body)
	}
	check := func(when string) {
		t.Helper()
		for name, data := range want {
			if got := readStream(t, c, n.url(name)).data; !bytes.Equal(got, data) {
				t.Errorf("%s: %s reads %d bytes %q; %d were acknowledged %q", when, name, len(got), clip(got), len(data), clip(data))
			}
			if h := headSnapshot(t, c, n.url(name)); h[":status"] != "200" || h["Stream-Next-Offset"] == "" {
				t.Errorf("%s: HEAD %s: %v", when, name, h)
			}
		}
	}

	// 1. Segment bytes do not fit: 507 with a message; the failed write is
	// undone, so nothing acknowledged is affected.
	var full reply
	const chunk = 64 << 10
	for i := 0; ; i++ {
		if i > 1000 {
			t.Fatalf("appended %d bytes to a 4 MiB tmpfs without a 507", len(want["fill"]))
		}
		full = appendTo("fill", octets, bytes.Repeat([]byte{byte('A' + i%26)}, chunk))
		if full.status != http.StatusNoContent {
			break
		}
	}
	if full.status != http.StatusInsufficientStorage {
		t.Fatalf("after %d bytes: %d %q; want 507", len(want["fill"]), full.status, full.body)
	}
	if len(bytes.TrimSpace(full.body)) == 0 {
		t.Errorf("507 without a message body")
	}
	t.Logf("append: 507 after %d acknowledged bytes: %q", len(want["fill"]), bytes.TrimSpace(full.body))
	check("after the first 507")

	// 2. Nothing is left at all (a file of ours takes the rest): sooner or
	// later a commit cannot write streams.db: 507. A later write is tried
	// again: 507, or 204 where LMDB finds free pages; never a 500.
	fillFileSystem(t, filepath.Join(mnt, "filler"))
	var refused reply
	creates := 0
	for i := 0; i < 5000 && refused.status == 0; i++ {
		creates++
		r := create(fmt.Sprintf("meta-%04d-%s", i, strings.Repeat("x", 200)), map[string]string{"Content-Type": "text/plain", "Stream-TTL": "3600"}, nil)
		if r.status != http.StatusCreated {
			refused = r
		}
	}
	if refused.status == 0 {
		t.Logf("5,000 creates on a full file system all succeeded (LMDB reused free pages); not checking the refusal")
	} else {
		if refused.status != http.StatusInsufficientStorage || len(bytes.TrimSpace(refused.body)) == 0 {
			t.Errorf("a create on the full file system: %d %q; want 507 with a message", refused.status, refused.body)
		}
		t.Logf("create %d on the full file system: %d %q", creates, refused.status, bytes.TrimSpace(refused.body))
		if r := appendTo("small", text, []byte("x")); r.status != http.StatusInsufficientStorage && r.status != http.StatusNoContent {
			t.Errorf("an append after a failed commit: %d %q; want 507 or 204 (a full disk is not fatal)", r.status, r.body)
		} else {
			t.Logf("next append: %d %q", r.status, bytes.TrimSpace(r.body))
		}
	}
	check("with the file system full")

	// 3. Restarts on the still-full file system.
	n.terminate()
	n.start()
	check("after a restart on the full file system")
	n.kill()
	n.start()
	check("after SIGKILL and a restart on the full file system")
	r := appendTo("small", text, []byte("after\n"))
	if r.status != http.StatusNoContent && r.status != http.StatusInsufficientStorage {
		t.Errorf("an append after the restart: %d %q; want 204 or 507", r.status, r.body)
	}
	t.Logf("an append after the restart: %d %q", r.status, bytes.TrimSpace(r.body))
	check("at the end")
}

// firstLineWith is the first line of s containing sub (case-insensitively).
func firstLineWith(s, sub string) string {
	for line := range strings.SplitSeq(s, "\n") {
		if strings.Contains(strings.ToLower(line), strings.ToLower(sub)) {
			return line
		}
	}
	return ""
}
