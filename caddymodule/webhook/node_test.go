package webhook

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// nodeReceiver runs testdata/receiver.mjs against jwksURL and returns its
// URL and the JSON lines it prints, one per request.
func nodeReceiver(t *testing.T, jwksURL string) (string, <-chan map[string]any) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the cross-language signature check needs Node.js 18 or later")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, node, "testdata/receiver.mjs")
	cmd.Env = append(cmd.Environ(), "JWKS_URL="+jwksURL, "PORT=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "listening ") {
		t.Fatalf("receiver did not start: %q, stderr: %s", sc.Text(), stderr.String())
	}
	url := "http://127.0.0.1:" + strings.TrimPrefix(sc.Text(), "listening ") + "/hook"
	lines := make(chan map[string]any, 100)
	go func() {
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				lines <- m
			}
		}
		close(lines)
	}()
	return url, lines
}

func nextLine(t *testing.T, lines <-chan map[string]any) map[string]any {
	t.Helper()
	select {
	case m, ok := <-lines:
		if !ok {
			t.Fatal("receiver exited")
		}
		return m
	case <-time.After(20 * time.Second):
		t.Fatal("receiver printed nothing")
		return nil
	}
}

// Node's crypto, given only the published JWK Set, verifies what we sign,
// rejects what we did not sign, and follows a key rotation by kid.
func TestNodeVerifiesSignaturesFromJWKSOnly(t *testing.T) {
	dir := t.TempDir()
	keys, err := OpenKeyRing(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var published atomic.Pointer[KeyRing]
	published.Store(keys)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Write(published.Load().JWKS())
	}))
	defer jwks.Close()
	url, lines := nodeReceiver(t, jwks.URL)

	s := NewSender(SenderOptions{AllowDev: true, Keys: keys})
	defer s.Close()
	bodies := []string{
		`{"subscription_id":"sub-1","wake_id":"w_1","generation":1,"streams":[]}`,
		`{"subscription_id":"sub-ü","wake_id":"w_2","streams":[{"path":"café/日本/x y","link_type":"glob"}]}`,
		`{"subscription_id":"sub-3","wake_id":"w_3","pad":"` + strings.Repeat("a.b,c=", 3000) + `"}`,
		"{\"subscription_id\":\"sub-4\",\"wake_id\":\"w_4\"}\n",
	}
	for i, b := range bodies {
		res := sendAndWait(t, s, Delivery{SubscriptionID: "s", URL: url, Body: []byte(b)})
		line := nextLine(t, lines)
		if res.Err != nil || res.Status != 200 || string(res.Body) != `{"done":true}` || line["ok"] != true || line["kid"] != keys.ActiveKID() {
			t.Errorf("body %d: result %+v (%s), receiver %v", i, res, res.Body, line)
		}
	}

	post := func(sig string, body []byte) (int, map[string]any) {
		req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Webhook-Signature", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, nextLine(t, lines)
	}
	body := []byte(`{"subscription_id":"sub-1","wake_id":"w_9"}`)
	now := time.Now()
	for name, c := range map[string]struct {
		sig    string
		body   []byte
		reason string
	}{
		"tampered body":  {keys.Sign(body, now), []byte(`{"subscription_id":"sub-2","wake_id":"w_9"}`), "bad signature"},
		"other time":     {strings.Replace(keys.Sign(body, now), "t=", "t=1", 1), body, "timestamp"},
		"stale":          {keys.Sign(body, now.Add(-10*time.Minute)), body, "timestamp outside the replay window"},
		"unknown kid":    {testKeys(t).Sign(body, now), body, "unknown kid"},
		"no signature":   {"", body, "malformed"},
		"signature only": {"ed25519=" + strings.Split(keys.Sign(body, now), "ed25519=")[1], body, "malformed"},
	} {
		status, line := post(c.sig, c.body)
		if status != 401 || line["ok"] != false || !strings.Contains(line["reason"].(string), c.reason) {
			t.Errorf("%s: status %d, receiver %v, want 401 and %q", name, status, line, c.reason)
		}
	}
	if status, line := post(keys.Sign(body, now), body); status != 200 || line["ok"] != true {
		t.Errorf("control: the same body signed properly: %d %v", status, line)
	}

	// Rotation: the server publishes both keys; the receiver, holding the
	// old set, meets the new kid, fetches the set again and verifies; a
	// delivery signed a moment earlier with the old key verifies too.
	rotated, err := RotateKeys(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	published.Store(rotated)
	s2 := NewSender(SenderOptions{AllowDev: true, Keys: rotated})
	defer s2.Close()
	for _, c := range []struct {
		s   *Sender
		kid string
	}{{s2, rotated.ActiveKID()}, {s, keys.ActiveKID()}} {
		res := sendAndWait(t, c.s, Delivery{SubscriptionID: "r", URL: url, Body: body})
		if line := nextLine(t, lines); res.Status != 200 || line["ok"] != true || line["kid"] != c.kid {
			t.Errorf("after rotation, kid %s: %+v, receiver %v", c.kid, res, line)
		}
	}
}
