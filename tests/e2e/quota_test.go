package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Memory mode with a small max_memory_bytes: appends until 507 with its
// one-line reason, the process alive, reads fine; a DELETE frees the room
// and appends resume; the metrics agree.
func TestMemoryBudgetRefusesThenResumesAfterDelete(t *testing.T) {
	srv := startCaddyfile(t, fmt.Sprintf(limitsCaddyfile, `max_memory_bytes 4MiB`))
	c := &http.Client{Timeout: 10 * time.Second}
	text := map[string]string{"Content-Type": "application/octet-stream"}
	url := srv.base + "/v1/stream/mem/a"
	if resp, _ := limitsDo(t, c, "PUT", url, text, ""); resp.StatusCode != 201 {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	chunk := strings.Repeat("x", 256<<10)
	accepted := 0
	for ; accepted < 100; accepted++ {
		resp, body := limitsDo(t, c, "POST", url, text, chunk)
		if resp.StatusCode == 204 {
			continue
		}
		if resp.StatusCode != 507 {
			t.Fatalf("append %d: %d %q", accepted, resp.StatusCode, body)
		}
		if want := "insufficient storage: in-memory streams hold 4 MiB, the max_memory_bytes limit is 4 MiB\n"; body != want {
			t.Fatalf("507 body %q, want %q", body, want)
		}
		break
	}
	if accepted != 16 {
		t.Fatalf("%d appends of 256 KiB accepted under a 4 MiB budget, want 16", accepted)
	}
	if resp, body := limitsDo(t, c, "PUT", srv.base+"/v1/stream/mem/b", text, "y"); resp.StatusCode != 507 {
		t.Fatalf("PUT with a body over the budget: %d %q", resp.StatusCode, body)
	}
	if !srv.Alive() {
		t.Fatal("server exited")
	}
	resp, body := limitsDo(t, c, "GET", url+"?offset=-1", nil, "")
	if resp.StatusCode != 200 || body != strings.Repeat("x", 1<<20) { // the read chunk is 1 MiB
		t.Fatalf("GET after 507: %d, %d bytes", resp.StatusCode, len(body))
	}
	m, _ := srv.metrics(c)
	if got, _ := sum(m, "caddy_durable_streams_stream_bytes"); got != 4<<20 {
		t.Errorf("stream_bytes = %v, want %d", got, 4<<20)
	}
	if got, _ := sum(m, "caddy_durable_streams_rejections_total", `reason="memory_budget"`); got != 2 {
		t.Errorf("rejections_total{reason=memory_budget} = %v, want 2", got)
	}

	if resp, _ := limitsDo(t, c, "DELETE", url, nil, ""); resp.StatusCode != 204 {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	if resp, body := limitsDo(t, c, "PUT", srv.base+"/v1/stream/mem/b", text, chunk); resp.StatusCode != 201 {
		t.Fatalf("PUT after DELETE: %d %q", resp.StatusCode, body)
	}
	if resp, _ := limitsDo(t, c, "POST", srv.base+"/v1/stream/mem/b", text, chunk); resp.StatusCode != 204 {
		t.Fatalf("append after DELETE: %d", resp.StatusCode)
	}
}

// Quotas per placement group, in memory and with data_dir (where a restart
// recounts what is stored): streams and bytes, 507 and the never-fits 403.
func TestQuotaPerGroup(t *testing.T) {
	const quota = `quota {
				max_streams_per_group 2
				max_bytes_per_group 1KiB
			}`
	check := func(t *testing.T, base string, c *http.Client) {
		text := map[string]string{"Content-Type": "text/plain"}
		for _, s := range []string{"g/a", "g/b", "h/a"} {
			if resp, body := limitsDo(t, c, "PUT", base+"/v1/stream/"+s, text, ""); resp.StatusCode != 201 {
				t.Fatalf("PUT %s: %d %q", s, resp.StatusCode, body)
			}
		}
		resp, body := limitsDo(t, c, "PUT", base+"/v1/stream/g/c", text, "")
		if want := "insufficient storage: group \"g\" holds 2 streams, the max_streams_per_group quota\n"; resp.StatusCode != 507 || body != want {
			t.Fatalf("third stream of g: %d %q, want 507 %q", resp.StatusCode, body, want)
		}
		if resp, _ := limitsDo(t, c, "POST", base+"/v1/stream/g/a", text, strings.Repeat("a", 1000)); resp.StatusCode != 204 {
			t.Fatalf("append 1000: %d", resp.StatusCode)
		}
		resp, body = limitsDo(t, c, "POST", base+"/v1/stream/g/b", text, strings.Repeat("b", 100))
		if want := "insufficient storage: group \"g\" holds 1000 bytes, the max_bytes_per_group quota is 1 KiB\n"; resp.StatusCode != 507 || body != want {
			t.Fatalf("append past g's bytes: %d %q, want 507 %q", resp.StatusCode, body, want)
		}
		resp, body = limitsDo(t, c, "POST", base+"/v1/stream/h/a", text, strings.Repeat("h", 2000))
		if want := "forbidden: a body of 2000 bytes is more than group \"h\" may ever hold, the max_bytes_per_group quota (1 KiB)\n"; resp.StatusCode != 403 || body != want {
			t.Fatalf("append larger than the quota: %d %q, want 403 %q", resp.StatusCode, body, want)
		}
		if resp, _ := limitsDo(t, c, "POST", base+"/v1/stream/h/a", text, strings.Repeat("h", 24)); resp.StatusCode != 204 {
			t.Fatalf("append within h's quota: %d", resp.StatusCode)
		}
	}
	t.Run("memory", func(t *testing.T) {
		srv := startCaddyfile(t, fmt.Sprintf(limitsCaddyfile, quota))
		c := &http.Client{Timeout: 10 * time.Second}
		check(t, srv.base, c)
		m, _ := srv.metrics(c)
		if got, _ := sum(m, "caddy_durable_streams_group_bytes", `group="g"`); got != 1000 {
			t.Errorf("group_bytes{group=g} = %v, want 1000", got)
		}
		if got, _ := sum(m, "caddy_durable_streams_group_streams", `group="h"`); got != 1 {
			t.Errorf("group_streams{group=h} = %v, want 1", got)
		}
		for reason, want := range map[string]float64{"quota_streams": 1, "quota_bytes": 2} {
			if got, _ := sum(m, "caddy_durable_streams_rejections_total", `reason="`+reason+`"`); got != want {
				t.Errorf("rejections_total{reason=%q} = %v, want %v", reason, got, want)
			}
		}
	})
	t.Run("data_dir", func(t *testing.T) {
		n := newNode(t, filepath.Join(t.TempDir(), "data"), quota)
		n.start()
		check(t, n.base, n.client)
		n.terminate()
		n.start()
		text := map[string]string{"Content-Type": "text/plain"}
		// Recovered usage: g holds 2 streams and 1000 bytes, h 24 bytes.
		if resp, _ := limitsDo(t, n.client, "PUT", n.url("g/c"), text, ""); resp.StatusCode != 507 {
			t.Fatalf("third stream of g after restart: %d", resp.StatusCode)
		}
		if resp, _ := limitsDo(t, n.client, "POST", n.url("g/b"), text, strings.Repeat("b", 25)); resp.StatusCode != 507 {
			t.Fatalf("append past g's bytes after restart: %d", resp.StatusCode)
		}
		if resp, _ := limitsDo(t, n.client, "POST", n.url("g/b"), text, strings.Repeat("b", 24)); resp.StatusCode != 204 {
			t.Fatalf("append filling g after restart: %d", resp.StatusCode)
		}
		if resp, _ := limitsDo(t, n.client, "DELETE", n.url("g/a"), nil, ""); resp.StatusCode != 204 {
			t.Fatalf("DELETE: %d", resp.StatusCode)
		}
		if resp, _ := limitsDo(t, n.client, "PUT", n.url("g/c"), text, strings.Repeat("c", 1000)); resp.StatusCode != 201 {
			t.Fatalf("PUT after DELETE freed g: %d", resp.StatusCode)
		}
	})
}
