package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durable-streams-server/durable-streams-server/tests/internal/dsserver"
)

// README, Webhook security: the signing keys live in
// <data_dir>/webhook-keys.json (mode 0600); `webhook-key rotate` makes a new
// active key; `backup` copies the keys with the streams, so a server
// restored from the copy keeps its kid and the tokens it issued.
func TestWebhookKeyCommandsAndBackup(t *testing.T) {
	bin := binary(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "data")
	n := newNode(t, src, "")
	n.start()
	if r := mustSend(t, n.client, http.MethodPut, n.url("kept"), map[string]string{"Content-Type": "text/plain"}, nil); r.status != http.StatusCreated {
		t.Fatalf("PUT: %d", r.status)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("webhook-key", "rotate", "--data-dir", src)
	rotated := run("webhook-key", "rotate", "--data-dir", src)
	kid := regexp.MustCompile(`New active webhook signing key: (ds_[A-Za-z0-9_-]{43})\n`).FindStringSubmatch(rotated)
	if kid == nil || !regexp.MustCompile(`Retired: ds_[A-Za-z0-9_-]{43}, published in jwks.json until at least `).MatchString(rotated) {
		t.Fatalf("rotate printed:\n%s", rotated)
	}
	fi, err := os.Stat(filepath.Join(src, "webhook-keys.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}

	dest := filepath.Join(tmp, "backup")
	run("backup", "--data-dir", src, backupDestFlag(t, bin), dest)
	shown := run("webhook-key", "show", "--data-dir", dest)
	if !regexp.MustCompile(`(?m)^active   ` + regexp.QuoteMeta(kid[1]) + `  created `).MatchString(shown) {
		t.Errorf("the backup's active key is not %s:\n%s", kid[1], shown)
	}
	fi, err = os.Stat(filepath.Join(dest, "webhook-keys.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup's key file: %v, %v", fi, err)
	}
	n.terminate()
}

// ---- Webhook subscriptions end to end (needs the subscriptions engine) ----

// whWake is the part of a webhook body (PROTOCOL.md §7.1) these tests read.
type whWake struct {
	SubscriptionID string `json:"subscription_id"`
	WakeID         string `json:"wake_id"`
	Generation     uint64 `json:"generation"`
	Streams        []struct {
		Path       string `json:"path"`
		TailOffset string `json:"tail_offset"`
	} `json:"streams"`
}

// whSub is the part of GET __ds/subscriptions/:id these tests read.
type whSub struct {
	Streams []struct {
		Path        string `json:"path"`
		AckedOffset string `json:"acked_offset"`
	} `json:"streams"`
}

func whDevNode(t *testing.T, extra string) *node {
	t.Helper()
	n := newNode(t, filepath.Join(t.TempDir(), "data"), "webhook_allow_dev on\n"+extra)
	n.start()
	return n
}

func whCreateSub(t *testing.T, n *node, id, pattern, url string) {
	t.Helper()
	body := fmt.Sprintf(`{"type":"webhook","pattern":%q,"webhook":{"url":%q}}`, pattern, url)
	if r := mustSend(t, n.client, http.MethodPut, n.url("__ds/subscriptions/"+id), map[string]string{"Content-Type": "application/json"}, []byte(body)); r.status != http.StatusCreated {
		t.Fatalf("create subscription %s: %d %s", id, r.status, r.body)
	}
}

func whCreateStream(t *testing.T, n *node, path string) {
	t.Helper()
	if r := mustSend(t, n.client, http.MethodPut, n.url(path), map[string]string{"Content-Type": "text/plain"}, nil); r.status != http.StatusCreated {
		t.Fatalf("create %s: %d %s", path, r.status, r.body)
	}
}

// whAppend appends and returns the stream's new tail offset.
func whAppend(t *testing.T, n *node, path, data string) string {
	t.Helper()
	r := mustSend(t, n.client, http.MethodPost, n.url(path), map[string]string{"Content-Type": "text/plain"}, []byte(data))
	if r.status != http.StatusNoContent && r.status != http.StatusOK {
		t.Fatalf("append %s: %d %s", path, r.status, r.body)
	}
	return r.header.Get("Stream-Next-Offset")
}

func whAcked(t *testing.T, n *node, id string) map[string]string {
	t.Helper()
	r := mustSend(t, n.client, http.MethodGet, n.url("__ds/subscriptions/"+id), nil, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET subscription %s: %d %s", id, r.status, r.body)
	}
	var s whSub
	if err := json.Unmarshal(r.body, &s); err != nil {
		t.Fatalf("GET subscription %s: %v: %s", id, err, r.body)
	}
	acked := map[string]string{}
	for _, st := range s.Streams {
		acked[st.Path] = st.AckedOffset
	}
	return acked
}

// whReceiver is a Go webhook receiver that records, per stream, the highest
// tail offset any delivery listed and when each delivery arrived, and
// answers {"done": true} after delay.
type whReceiver struct {
	srv   *httptest.Server
	delay time.Duration
	mu    sync.Mutex
	tails map[string]string
	wakes []whWake
	got   chan whWake
}

func newWhReceiver(t *testing.T, delay time.Duration) *whReceiver {
	rc := &whReceiver{delay: delay, tails: map[string]string{}, got: make(chan whWake, 1024)}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var wake whWake
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &wake); err != nil || r.Header.Get("Webhook-Signature") == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		time.Sleep(rc.delay) // a receiver doing some work
		rc.mu.Lock()
		for _, s := range wake.Streams {
			if s.TailOffset > rc.tails[s.Path] {
				rc.tails[s.Path] = s.TailOffset
			}
		}
		rc.wakes = append(rc.wakes, wake)
		rc.mu.Unlock()
		select {
		case rc.got <- wake:
		default:
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"done":true}`)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *whReceiver) tail(path string) string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.tails[path]
}

// Every delivery of a real server verifies in Node with only jwks.json,
// including after `webhook-key rotate` on the running server.
func TestWebhookE2ENodeVerifiesEverySignature(t *testing.T) {
	bin := binary(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the cross-language signature check needs Node.js 18 or later")
	}
	n := whDevNode(t, "")
	defer n.terminate()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "../../caddymodule/webhook/testdata/receiver.mjs")
	cmd.Env = append(cmd.Environ(), "JWKS_URL="+n.url("__ds/jwks.json"), "PORT=0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr dsserver.Output
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "listening ") {
		t.Fatalf("receiver did not start: %q %s", sc.Text(), stderr.String())
	}
	recv := "http://127.0.0.1:" + strings.TrimPrefix(sc.Text(), "listening ") + "/hook"
	type verdict struct {
		OK     bool   `json:"ok"`
		KID    string `json:"kid"`
		Reason string `json:"reason"`
	}
	verdicts := make(chan verdict, 1024)
	go func() {
		for sc.Scan() {
			var v verdict
			if json.Unmarshal(sc.Bytes(), &v) == nil {
				verdicts <- v
			}
		}
		close(verdicts)
	}()

	var set struct{ Keys []struct{ Kid string } }
	r := mustSend(t, n.client, http.MethodGet, n.url("__ds/jwks.json"), nil, nil)
	if err := json.Unmarshal(r.body, &set); r.status != 200 || err != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks.json: %d %s", r.status, r.body)
	}
	kid1 := set.Keys[0].Kid

	const streams = 5
	for i := 0; i < streams; i++ {
		whCreateStream(t, n, fmt.Sprintf("hooks/s%d", i))
	}
	whCreateSub(t, n, "verify", "hooks/*", recv)
	last := map[string]string{}
	appendRound := func(round int) {
		for i := 0; i < streams; i++ {
			p := fmt.Sprintf("hooks/s%d", i)
			last[p] = whAppend(t, n, p, fmt.Sprintf("round %d café ✓ %d\n", round, i))
		}
	}
	seen := map[string]int{}
	drain := func() {
		for {
			select {
			case v := <-verdicts:
				if !v.OK {
					t.Fatalf("Node rejected a delivery: %s", v.Reason)
				}
				seen[v.KID]++
			default:
				return
			}
		}
	}
	waitAcked := func(what string) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer wcancel()
		if !eventually(wctx, 50*time.Millisecond, func() bool {
			drain() // fail at the first rejected signature
			acked := whAcked(t, n, "verify")
			for p, off := range last {
				if acked[p] != off {
					return false
				}
			}
			return true
		}) {
			t.Fatalf("%s: acked %v, want %v", what, whAcked(t, n, "verify"), last)
		}
	}
	for round := 0; round < 5; round++ {
		appendRound(round)
	}
	waitAcked("before rotation")
	drain()
	if seen[kid1] == 0 {
		t.Fatalf("no delivery verified with %s: %v", kid1, seen)
	}

	// Rotate on the running server: it signs with the new key within a
	// second; the receiver meets an unknown kid, fetches jwks.json again
	// and verifies.
	rot, err := exec.Command(bin, "webhook-key", "rotate", "--data-dir", n.dataDir).CombinedOutput()
	if err != nil {
		t.Fatalf("webhook-key rotate: %v %s", err, rot)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	round := 5
	if !eventually(wctx, 200*time.Millisecond, func() bool {
		appendRound(round)
		round++
		waitAcked("after rotation")
		drain()
		return len(seen) == 2
	}) {
		t.Fatalf("no delivery signed with the rotated key: %v", seen)
	}
	r = mustSend(t, n.client, http.MethodGet, n.url("__ds/jwks.json"), nil, nil)
	if err := json.Unmarshal(r.body, &set); err != nil || len(set.Keys) != 2 || set.Keys[1].Kid != kid1 {
		t.Errorf("jwks.json after rotation: %s; want the new key and %s", r.body, kid1)
	}
}

// A receiver that never answers does not delay another subscription's
// deliveries: with one delivery hanging, each append to another
// subscription's stream reaches its receiver promptly.
func TestWebhookE2EBlackholeDoesNotDelayOthers(t *testing.T) {
	binary(t)
	n := whDevNode(t, "")
	defer n.terminate()
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	arrived := make(chan struct{}, 16)
	go func() {
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			go func() {
				buf := make([]byte, 1<<16)
				if _, err := c.Read(buf); err == nil {
					arrived <- struct{}{}
				}
				io.Copy(io.Discard, c) // never answer
			}()
		}
	}()
	fast := newWhReceiver(t, 0)
	whCreateStream(t, n, "stuck/x")
	whCreateStream(t, n, "fast/y")
	whCreateSub(t, n, "stuck", "stuck/*", "http://"+hole.Addr().String()+"/hook")
	whCreateSub(t, n, "fast", "fast/*", fast.srv.URL+"/hook")
	whAppend(t, n, "stuck/x", "a")
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the blackholed receiver never got its delivery")
	}
	var lat []time.Duration
	for i := 0; i < 20; i++ {
		start := time.Now()
		off := whAppend(t, n, "fast/y", fmt.Sprintf("m%d", i))
		deadline := time.After(30 * time.Second)
		for fast.tail("fast/y") < off {
			select {
			case <-fast.got:
			case <-deadline:
				t.Fatalf("append %d never delivered", i)
			}
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("append→delivered beside a blackholed receiver: p50 %v, max %v", lat[len(lat)/2], lat[len(lat)-1])
	if lat[len(lat)-1] > 3*time.Second {
		t.Errorf("slowest delivery took %v (the blackholed one holds its delivery for 10 s)", lat[len(lat)-1])
	}
}

// SIGKILL while deliveries are in flight, then restart: no cursor moves
// back and every append is eventually delivered (at least once).
func TestWebhookE2ESIGKILLDuringDeliveries(t *testing.T) {
	binary(t)
	n := whDevNode(t, "fsync always")
	recv := newWhReceiver(t, 30*time.Millisecond)
	const streams, appends = 4, 60
	for i := 0; i < streams; i++ {
		whCreateStream(t, n, fmt.Sprintf("k/s%d", i))
	}
	whCreateSub(t, n, "durable", "k/*", recv.srv.URL+"/hook")
	last := map[string]string{}
	var ackedBefore map[string]string
	for i := 0; i < appends; i++ {
		p := fmt.Sprintf("k/s%d", i%streams)
		last[p] = whAppend(t, n, p, fmt.Sprintf("rec %d\n", i))
		if i == appends/2 {
			// Deliveries are in flight: the receiver takes 30 ms each.
			ackedBefore = whAcked(t, n, "durable")
			n.kill()
			n.start()
			after := whAcked(t, n, "durable")
			for p, off := range ackedBefore {
				if after[p] < off {
					t.Errorf("%s: acked_offset moved back across SIGKILL: %s -> %s", p, off, after[p])
				}
			}
		}
	}
	defer n.terminate()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if !eventually(ctx, 100*time.Millisecond, func() bool {
		acked := whAcked(t, n, "durable")
		for p, off := range last {
			if recv.tail(p) < off || acked[p] != off {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("not every append was delivered after SIGKILL: delivered %v, acked %v, appended %v", recv.tails, whAcked(t, n, "durable"), last)
	}
}
