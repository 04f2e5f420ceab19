package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// README, Running it and Durability: `durable-streams-server verify
// --data-dir X` checks every stream's bytes against their checksums, offline
// and while a server runs; a read of damaged bytes answers 500 with a
// one-line reason (counted in caddy_durable_streams_checksum_failures_total)
// while other streams keep serving.
func TestVerifyAndChecksumMismatch(t *testing.T) {
	bin := binary(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	n := newNode(t, dataDir, "fsync always")
	// The node's Caddyfile, plus /metrics.
	conf := strings.Replace(n.caddyfile(), "\thandle /health {", "\thandle /metrics {\n\t\tmetrics\n\t}\n\thandle /health {", 1)
	if err := os.WriteFile(n.confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	n.start()
	c := n.client
	octet := map[string]string{"Content-Type": "application/octet-stream"}
	// Stream a: 200,000 bytes in its creating PUT (synced in place, so no
	// write-ahead entry could repair them), then a small append.
	a := make([]byte, 200_000)
	for i := range a {
		a[i] = byte('a' + i%23)
	}
	if r := mustSend(t, c, http.MethodPut, n.url("a"), octet, a[:190_000]); r.status != http.StatusCreated {
		t.Fatalf("PUT a: %d %q", r.status, r.body)
	}
	if r := mustSend(t, c, http.MethodPost, n.url("a"), octet, a[190_000:]); r.status != http.StatusNoContent {
		t.Fatalf("POST a: %d %q", r.status, r.body)
	}
	b := bytes.Repeat([]byte("b-stream "), 5000)
	if r := mustSend(t, c, http.MethodPut, n.url("b"), octet, b); r.status != http.StatusCreated {
		t.Fatalf("PUT b: %d %q", r.status, r.body)
	}

	verify := func(when string, wantOK bool) string {
		t.Helper()
		out, err := exec.Command(bin, "verify", "--data-dir", dataDir).CombinedOutput()
		if wantOK && err != nil {
			t.Fatalf("verify %s: %v\n%s", when, err, out)
		}
		if !wantOK && err == nil {
			t.Fatalf("verify %s: exit 0; want non-zero for the damaged byte\n%s", when, out)
		}
		return string(out)
	}
	// A clean directory passes, online.
	if out := verify("online, clean", true); !strings.Contains(out, "2 streams") || !strings.Contains(out, "no problems") {
		t.Errorf("verify online, clean: %q", out)
	}

	// Flip one byte of a, in its second 64 KiB block.
	dirs := segmentDirs(t, dataDir)
	if len(dirs) != 2 {
		t.Fatalf("segments/ holds %v; want two stream directories", dirs)
	}
	segment := filepath.Join(dataDir, "segments", dirs[0], fmt.Sprintf("%016d.seg", 0))
	f, err := os.OpenFile(segment, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{a[70_000] ^ 0x20}, 70_000); err != nil {
		t.Fatal(err)
	}
	f.Close()

	const damaged = "bytes [65536, 131072)"
	out := verify("online, damaged", false)
	if !strings.Contains(out, "/v1/stream/a") || !strings.Contains(out, damaged) || strings.Contains(out, "/v1/stream/b") {
		t.Errorf("verify online names %q; want stream a's %s only:\n%s", out, damaged, out)
	}
	n.terminate()
	out = verify("offline, damaged", false)
	if !strings.Contains(out, "/v1/stream/a") || !strings.Contains(out, damaged) {
		t.Errorf("verify offline: want stream a's %s:\n%s", damaged, out)
	}

	// A restarted server has not checked a's old blocks yet: the damaged
	// one answers 500 with a one-line reason, the rest of a and all of b
	// serve.
	n.start()
	r := mustSend(t, c, http.MethodGet, n.url("a")+"?offset=-1", nil, nil)
	if r.status != http.StatusInternalServerError || !bytes.Contains(r.body, []byte(damaged)) ||
		bytes.Count(bytes.TrimSpace(r.body), []byte("\n")) != 0 {
		t.Errorf("GET a: %d %q; want 500 naming %s in one line", r.status, clip(r.body), damaged)
	}
	if bytes.Contains(r.body, a[60_000:60_100]) {
		t.Errorf("GET a served stream bytes in its 500")
	}
	if got := readStream(t, c, n.url("b")).data; !bytes.Equal(got, b) {
		t.Errorf("b reads %q; want its %d bytes", clip(got), len(b))
	}
	r = mustSend(t, c, http.MethodGet, n.url("a")+"?offset="+offsetAt(131_072), nil, nil)
	if r.status != http.StatusOK || !bytes.Equal(r.body, a[131_072:]) {
		t.Errorf("GET a past the damaged block: %d %q", r.status, clip(r.body))
	}
	if !strings.Contains(n.srv.Output.String(), damaged+" of stream") {
		t.Errorf("the server's log does not name the damaged range:\n%s", tail(n.srv.Output.String(), 20))
	}
	m, ok := n.srv.metrics(c)
	if !ok {
		t.Fatal("no /metrics")
	}
	if v, found := sum(m, "caddy_durable_streams_checksum_failures_total"); !found || v < 1 {
		t.Errorf("caddy_durable_streams_checksum_failures_total = %v (found %v); want >= 1", v, found)
	}
	n.terminate()
}
