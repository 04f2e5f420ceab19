package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Operations (README, "Operations"): `validate` never creates, opens or
// locks anything in data_dir (storage opens when the server starts), and
// says which path and user are the problem when data_dir is not writable.

// validate runs `validate` on a Caddyfile and returns its output and error;
// asUser, when set, is a setpriv prefix that runs it as another user.
func validate(t *testing.T, conf string, asUser ...string) (string, error) {
	t.Helper()
	args := append(append([]string{}, asUser...), binary(t), "validate", "--config", conf, "--adapter", "caddyfile")
	cmd := exec.Command(args[0], args[1:]...)
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o777)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_DATA_HOME="+filepath.Join(dir, "data"), "HOME="+dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestValidateTouchesNoDataDir(t *testing.T) {
	binary(t)
	// While the server runs on data_dir: validate passes.
	n := newNode(t, filepath.Join(t.TempDir(), "data"), "")
	n.start()
	mustSend(t, n.client, http.MethodPut, n.url("v"), map[string]string{"Content-Type": "text/plain"}, nil)
	if out, err := validate(t, n.confPath); err != nil || !strings.Contains(out, "Valid configuration") {
		t.Errorf("validate while the server runs on its data_dir: %v\n%s", err, tail(out, 5))
	}
	if r := mustSend(t, n.client, http.MethodPost, n.url("v"), map[string]string{"Content-Type": "text/plain"}, []byte("x")); r.status != http.StatusNoContent {
		t.Errorf("append after validate: %d %q", r.status, r.body)
	}

	// A data_dir that does not exist yet stays that way, and so does an
	// empty one: no LOCK, no streams.db.
	root := t.TempDir()
	fresh := newNode(t, filepath.Join(root, "fresh", "data"), "")
	if out, err := validate(t, fresh.confPath); err != nil {
		t.Errorf("validate with a data_dir to be created: %v\n%s", err, tail(out, 5))
	}
	if _, err := os.Stat(filepath.Join(root, "fresh")); !os.IsNotExist(err) {
		t.Errorf("validate created %s (stat: %v)", filepath.Join(root, "fresh"), err)
	}
	empty := filepath.Join(root, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := validate(t, newNode(t, empty, "").confPath); err != nil {
		t.Errorf("validate with an empty data_dir: %v\n%s", err, tail(out, 5))
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("validate left %d entries in the empty data_dir (first %s)", len(entries), entries[0].Name())
	}
}

// A data_dir the server's user cannot write: validate names the path and
// the user, and creates nothing. As root (who may write anywhere) the check
// runs as nobody through setpriv.
func TestValidateReportsAnUnwritableDataDir(t *testing.T) {
	binary(t)
	var asUser []string
	user := fmt.Sprintf("uid %d", os.Getuid())
	if os.Getuid() == 0 {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Skip("running as root without setpriv: cannot run validate as another user")
		}
		asUser = []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"}
		user = "(uid 65534)"
	}
	// Every directory up to the files must be reachable by that user.
	root := t.TempDir()
	for p := root; p != "/"; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o005 != 0o005 {
			if os.Getuid() != 0 {
				break
			}
			if err := os.Chmod(p, fi.Mode().Perm()|0o005); err != nil {
				t.Fatal(err)
			}
		}
	}
	readOnly := filepath.Join(root, "ro")
	if err := os.Mkdir(readOnly, 0o555); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(readOnly, 0o555); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what, dataDir, path string
	}{
		{"a data_dir in a read-only directory", filepath.Join(readOnly, "data"), readOnly},
		{"a read-only data_dir", readOnly, readOnly},
	} {
		n := newNode(t, c.dataDir, "")
		if err := os.Chmod(filepath.Dir(n.confPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(n.confPath, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := validate(t, n.confPath, asUser...)
		if err == nil {
			t.Errorf("%s: validate passed; want an error\n%s", c.what, tail(out, 5))
			continue
		}
		if !strings.Contains(out, c.path) || !strings.Contains(out, user) || !strings.Contains(out, "not writable") {
			t.Errorf("%s: the error does not name %s, the user (%s) and the cause:\n%s", c.what, c.path, user, tail(out, 3))
		}
	}
	if entries, _ := os.ReadDir(readOnly); len(entries) != 0 {
		t.Errorf("validate created %s in the read-only directory", entries[0].Name())
	}
}

// reload runs `reload` against the node's admin endpoint.
func (n *node) reload(ctx context.Context, admin string) error {
	out, err := exec.CommandContext(ctx, binary(n.t), "reload", "--config", n.confPath, "--adapter", "caddyfile", "--address", admin, "--force").CombinedOutput()
	if err != nil {
		return fmt.Errorf("reload: %v\n%s", err, out)
	}
	return nil
}

// A reload under load applies the new options to the running engine (the
// 413 message names the new size; long-polls wait the new timeout), fails
// no append, and cuts no reader: an SSE connection the engine took over
// goes on streaming, a goroutine-served long-poll is answered at once.
func TestReloadAppliesOptionsAndKeepsReaders(t *testing.T) {
	binary(t)
	sock := filepath.Join(t.TempDir(), "admin.sock")
	admin := "unix/" + sock
	n := newNode(t, filepath.Join(t.TempDir(), "data"), "max_append_size 1KiB\n\t\t\tlong_poll_timeout 1m")
	n.global = "admin " + admin + "|0600\n\tservers {\n\t\tprotocols h1 h2c\n\t}"
	n.writeConfig()
	n.start()
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v, mode %v; want mode 0600", err, fi.Mode().Perm())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	text := map[string]string{"Content-Type": "text/plain"}
	tooLarge := func(size int) string {
		t.Helper()
		r := mustSend(t, n.client, http.MethodPost, n.url("big"), text, []byte(strings.Repeat("b", size)))
		if r.status != http.StatusRequestEntityTooLarge {
			t.Fatalf("append of %d bytes: %d %q; want 413", size, r.status, r.body)
		}
		return string(r.body)
	}
	mustSend(t, n.client, http.MethodPut, n.url("big"), text, nil)
	if msg := tooLarge(1500); !strings.Contains(msg, "(1024 bytes)") {
		t.Errorf("413 before the reload: %q; want it to name 1024 bytes", msg)
	}

	// Readers: an SSE connection over HTTP/1.1 (the engine takes it over)
	// and a long-poll.
	tailOffset := put(t, n.client, n.url("live"))
	sse := newSSEReader()
	sseCtx, sseCancel := context.WithCancel(ctx)
	defer sseCancel()
	go sse.run(sseCtx, &http.Client{}, n.url("live")+"?offset="+tailOffset+"&live=sse")
	select {
	case <-sse.ready:
	case <-ctx.Done():
		t.Fatalf("SSE reader not ready: %s", sse.describe())
	}
	polled := make(chan pollResult, 1)
	go func() { polled <- longPoll(ctx, &http.Client{}, n.url("live"), tailOffset) }()
	// An SSE reader over h2c: a goroutine serves it (no takeover), so the
	// reload ends it, on a final control event.
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	goSSE := make(chan []string, 1) // the event types it received, once it ended
	goSSEReady := make(chan struct{})
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.url("live")+"?offset="+tailOffset+"&live=sse", nil)
		res, err := (&http.Client{Transport: h2c}).Do(req)
		if err != nil {
			goSSE <- []string{"error: " + err.Error()}
			return
		}
		defer res.Body.Close()
		var events []string
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if ev, ok := strings.CutPrefix(sc.Text(), "event:"); ok {
				events = append(events, strings.TrimSpace(ev))
				if len(events) == 1 {
					close(goSSEReady)
				}
			}
		}
		if sc.Err() != nil {
			events = append(events, "error: "+sc.Err().Error())
		}
		goSSE <- events
	}()
	select {
	case <-goSSEReady:
	case <-ctx.Done():
		t.Fatal("the h2c SSE reader got no first event")
	}

	// Writers, to their own streams, through the reload.
	var stop atomic.Bool
	var failures, resent atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		url := n.url(fmt.Sprintf("load-%d", w))
		mustSend(t, n.client, http.MethodPut, url, text, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; !stop.Load(); seq++ {
				r, err := send(n.client, http.MethodPost, url, producerHeaders("text/plain", "w", 0, seq), []byte("x"))
				// The old config's server closes its idle keep-alive
				// connections when it stops, and a request written onto
				// one just then is reset unanswered (net/http's Shutdown;
				// README, Operations). Nothing of it was processed, so it
				// is resent as is (same seq: a duplicate would be
				// deduplicated), once, and counted.
				if err != nil {
					resent.Add(1)
					r, err = send(n.client, http.MethodPost, url, producerHeaders("text/plain", "w", 0, seq), []byte("x"))
				}
				if err == nil && r.status != http.StatusOK {
					err = fmt.Errorf("%d %q", r.status, r.body)
				}
				if err != nil {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}

	time.Sleep(200 * time.Millisecond) // let the writers get going
	n.handler = "max_append_size 2KiB\n\t\t\tlong_poll_timeout 1s"
	n.writeConfig()
	if err := n.reload(ctx, admin); err != nil {
		t.Fatal(err)
	}

	// The old config's long-poll is answered at once (its 1m timeout is far).
	select {
	case r := <-polled:
		if r.err != nil || r.status != http.StatusNoContent {
			t.Errorf("the long-poll open across the reload: %d %v; want 204", r.status, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long-poll open across the reload was not answered within 10s")
	}
	// The goroutine-served SSE response ended cleanly on a second control
	// event (the first said where the tail was when it began).
	select {
	case events := <-goSSE:
		if strings.Join(events, ",") != "control,control" {
			t.Errorf("the h2c SSE reader open across the reload received %q; want the first control event, then a final one, then the end", events)
		}
	case <-time.After(10 * time.Second):
		t.Error("the h2c SSE reader open across the reload was not ended within 10s")
	}
	// The new options are in force.
	if msg := tooLarge(3000); !strings.Contains(msg, "(2048 bytes)") {
		t.Errorf("413 after the reload: %q; want it to name 2048 bytes", msg)
	}
	if r := mustSend(t, n.client, http.MethodPost, n.url("big"), text, []byte(strings.Repeat("b", 1500))); r.status != http.StatusNoContent {
		t.Errorf("append of 1500 bytes after raising max_append_size: %d %q; want 204", r.status, r.body)
	}
	start := time.Now()
	if r := longPoll(ctx, n.client, n.url("live"), tailOffset); r.status != http.StatusNoContent {
		t.Errorf("long-poll after the reload: %d %v; want 204", r.status, r.err)
	} else if waited := time.Since(start); waited < 900*time.Millisecond || waited > 10*time.Second {
		t.Errorf("long-poll after the reload waited %v; want the new 1s timeout", waited)
	}
	// The taken-over SSE reader still streams.
	post(t, n.client, n.url("live"), "after-reload")
	select {
	case <-sse.event("after-reload"):
	case <-time.After(10 * time.Second):
		t.Errorf("the SSE reader open across the reload did not receive an append sent after it: %s", sse.describe())
	}

	stop.Store(true)
	wg.Wait()
	if f := failures.Load(); f != 0 {
		t.Errorf("%d appends failed across the reload (first: %v)", f, firstFailure.Load())
	}
	// At most one request per writer's connection can meet the close.
	if r := resent.Load(); r > 4 {
		t.Errorf("%d appends were reset unanswered across the reload; want at most one per writer (4)", r)
	}
}

// A reload that changes data_dir hands the handler to a new engine: new
// streams live in the new directory, the old config's long-poll gets the
// old engine's answer (not a closed engine's 503), and the old engine is
// closed once its last request is over, releasing its directory to another
// server.
// The long-poll open across the reload is served by a goroutine (a request
// in flight in Caddy's metrics) or taken over by the engine (not in flight
// there); either way the old engine answers it.
func TestReloadToAnotherDataDir(t *testing.T) {
	for _, tc := range []struct {
		option   string
		inFlight int
	}{
		{"long_poll_takeover off", 3},
		{"long_poll_takeover on", 2},
	} {
		t.Run(tc.option, func(t *testing.T) { testReloadToAnotherDataDir(t, tc.option, tc.inFlight) })
	}
}

func testReloadToAnotherDataDir(t *testing.T, option string, inFlight int) {
	bin := binary(t)
	admin := "unix/" + filepath.Join(t.TempDir(), "admin.sock")
	oldDir, newDir := filepath.Join(t.TempDir(), "old"), filepath.Join(t.TempDir(), "new")
	port := freePort(t)
	conf := filepath.Join(t.TempDir(), "Caddyfile")
	write := func(dataDir string) {
		t.Helper()
		cfg := fmt.Sprintf(`{
	admin %s
	auto_https off
	metrics
}

http://127.0.0.1:%d {
	handle /health {
		respond "OK" 200
	}
	handle /metrics {
		metrics
	}
	route /v1/stream/* {
		durable_streams {
			data_dir %q
			long_poll_timeout 1m
			%s
		}
	}
}
`, admin, port, dataDir, option)
		if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(oldDir)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	srv := startProcess(t, base, nil, "run", "--config", conf, "--adapter", "caddyfile")
	srv.waitHealthy(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := &http.Client{Timeout: 30 * time.Second}
	tailOffset := put(t, c, base+"/v1/stream/before")
	polled := make(chan pollResult, 1)
	go func() { polled <- longPoll(ctx, &http.Client{}, base+"/v1/stream/before", tailOffset) }()
	srv.waitMetric(t, ctx, c, "the long-poll parked", metricParked, 1)
	// And an append whose body is still coming when the reload happens.
	body, bodyWriter := io.Pipe()
	appended := make(chan reply, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/stream/before", body)
		req.Header.Set("Content-Type", "text/plain")
		res, err := (&http.Client{}).Do(req)
		if err != nil {
			appended <- reply{status: -1, body: []byte(err.Error())}
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		appended <- reply{status: res.StatusCode, body: b}
	}()
	if _, err := bodyWriter.Write([]byte("slow ")); err != nil {
		t.Fatal(err)
	}
	// In flight in the routes (handler "subroute"): the long-poll (unless
	// taken over), the append and this scrape.
	srv.waitMetric(t, ctx, c, "the slow append in the handler", "caddy_http_requests_in_flight", inFlight, `handler="subroute"`)

	write(newDir)
	out, err := exec.CommandContext(ctx, bin, "reload", "--config", conf, "--adapter", "caddyfile", "--address", admin, "--force").CombinedOutput()
	if err != nil {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	select {
	case r := <-polled:
		if r.err != nil || r.status != http.StatusNoContent {
			t.Errorf("the long-poll open across the reload: %d %v; want the old engine's 204", r.status, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long-poll open across the reload was not answered within 10s")
	}
	if _, err := bodyWriter.Write([]byte("append")); err != nil {
		t.Fatal(err)
	}
	bodyWriter.Close()
	if r := <-appended; r.status != http.StatusNoContent {
		t.Errorf("an append whose body was still coming during the reload: %d %q; want the old engine's 204", r.status, r.body)
	}
	c.CloseIdleConnections()
	put(t, c, base+"/v1/stream/after")
	if _, err := os.Stat(filepath.Join(newDir, "LOCK")); err != nil {
		t.Errorf("the new data_dir has no LOCK after the reload: %v", err)
	}
	if r := mustSend(t, c, http.MethodHead, base+"/v1/stream/before", nil, nil); r.status != http.StatusNotFound {
		t.Errorf("HEAD of a stream of the old data_dir after the reload: %d; want 404", r.status)
	}

	// The old directory is free: another server opens it and finds its stream.
	other := newNode(t, oldDir, "")
	other.start()
	if got := readStream(t, other.client, other.url("before")).data; string(got) != "slow append" {
		t.Errorf("the old data_dir's stream, on a server started on it: %q; want the append made across the reload", got)
	}
}
