package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestTokenCost measures, end to end, the server CPU per small catch-up
// read without tokens, with an HS256 and with an EdDSA token, and with
// rate limits (generous, never refusing). Not a pass/fail test: it logs
// the numbers. DS_TOKEN_COST=1 runs it (about 30 s).
func TestTokenCost(t *testing.T) {
	if os.Getenv("DS_TOKEN_COST") == "" {
		t.Skip("set DS_TOKEN_COST=1 to measure the cost of tokens and rate limits")
	}
	const secret = "cost-secret-0123456789-0123456789-abcdef"
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	enc := base64.RawURLEncoding
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	set, _ := json.Marshal(map[string]any{"keys": []map[string]any{{"kty": "OKP", "crv": "Ed25519", "kid": "e1", "x": enc.EncodeToString(pub)}}})
	if err := os.WriteFile(jwks, set, 0o644); err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"aud": "cost", "exp": time.Now().Add(time.Hour).Unix(),
		"ds": map[string]any{"read": []string{"**"}, "create": []string{"**"}, "append": []string{"**"}}}
	hs := mintHS256(secret, claims)
	h, _ := json.Marshal(map[string]any{"alg": "EdDSA", "kid": "e1"})
	c, _ := json.Marshal(claims)
	signed := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	ed := signed + "." + enc.EncodeToString(ed25519.Sign(priv, []byte(signed)))

	tokens := fmt.Sprintf("tokens {\n audience cost\n hmac_secret %s\n jwks_file %s\n }", secret, jwks)
	for _, tc := range []struct{ name, opts, token string }{
		{"none", "", ""},
		{"rate limits", "rate_limit {\n per_client 1000000/s\n per_group 1000000/s\n }", ""},
		{"HS256", tokens, hs},
		{"EdDSA", tokens, ed},
	} {
		srv := startCaddyfile(t, fmt.Sprintf(limitsCaddyfile, tc.opts))
		hdr := map[string]string{"Content-Type": "text/plain"}
		if tc.token != "" {
			hdr["Authorization"] = "Bearer " + tc.token
		}
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second}
		url := srv.base + "/v1/stream/cost/s"
		if resp, _ := limitsDo(t, client, "PUT", url, hdr, strings.Repeat("x", 100)); resp.StatusCode != 201 {
			t.Fatalf("%s: PUT %d", tc.name, resp.StatusCode)
		}
		cpu0 := processCPU(t, srv.Pid())
		var n atomic.Int64
		stop := time.Now().Add(5 * time.Second)
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					req, _ := http.NewRequest("GET", url+"?offset=-1", nil)
					if tc.token != "" {
						req.Header.Set("Authorization", "Bearer "+tc.token)
					}
					resp, err := client.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						t.Errorf("%s: GET %d", tc.name, resp.StatusCode)
						return
					}
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		cpu := processCPU(t, srv.Pid()) - cpu0
		t.Logf("%-12s %7.0f reads/s, server CPU %5.1f µs per read", tc.name, float64(n.Load())/5, cpu.Seconds()*1e6/float64(n.Load()))
		srv.Stop()
	}
}

// processCPU is a process's user+system CPU time so far.
func processCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}
