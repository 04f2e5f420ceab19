package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// directSite serves streams, /health and /metrics; %s takes durable_streams
// options.
const directSite = `{
	admin off
	auto_https off
}

http://127.0.0.1:%%d {
	respond /health "OK" 200
	route /metrics {
		metrics /metrics
	}
	route /v1/stream/* {
		durable_streams {
			%s
		}
	}
}
`

// rawHead sends one request on conn and reads its answer's head byte for
// byte, then the Content-Length bytes of body (none for HEAD).
func rawHead(t *testing.T, conn net.Conn, br *bufio.Reader, host, method, path string) (head string, body []byte) {
	t.Helper()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\n\r\n", method, path, host); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	var b strings.Builder
	length := -1
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("%s %s: head: %v (so far %q)", method, path, err, b.String())
		}
		b.WriteString(line)
		if line == "\r\n" {
			break
		}
		if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
			if length, err = strconv.Atoi(strings.TrimSpace(v)); err != nil {
				t.Fatalf("%s %s: %q", method, path, line)
			}
		}
	}
	if method == http.MethodHead || length <= 0 {
		return b.String(), nil
	}
	body = make([]byte, length)
	if _, err := io.ReadFull(br, body); err != nil {
		t.Fatalf("%s %s: body of %d bytes: %v", method, path, length, err)
	}
	return b.String(), body
}

// withoutDate drops the Date line, the one line two answers may differ in.
func withoutDate(head string) string {
	var out []string
	for line := range strings.SplitSeq(head, "\r\n") {
		if !strings.HasPrefix(line, "Date: ") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\r\n")
}

func directCount(t *testing.T, s *server, c *http.Client) float64 {
	t.Helper()
	m, ok := s.metrics(c)
	if !ok {
		t.Fatal("no /metrics")
	}
	n, _ := sum(m, "caddy_durable_streams_direct_reads_total")
	return n
}

// openFiles counts the server's open descriptors.
func openFiles(t *testing.T, s *server) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.Pid()))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	return len(ents)
}

// Reads of 1 MiB or more over plain HTTP/1.1 are written on the connection
// directly (direct_reads, README "Performance"), and then the connection
// serves the next request. In memory and with data_dir: every page of a
// catch-up exact (bytes, Content-Length, Stream-Next-Offset, ETag) over one
// keep-alive connection, with the head byte for byte what net/http writes
// for the same read (a server with direct_reads off); pipelined requests
// answered in order; clients that leave mid-body leak no descriptor and
// leave the server serving.
func TestDirectReadsKeepConnectionsAndBytes(t *testing.T) {
	binary(t)
	for _, mode := range []string{"memory", "data_dir"} {
		t.Run(mode, func(t *testing.T) {
			opts := func(name string) string {
				if mode == "data_dir" {
					return "data_dir " + filepath.Join(t.TempDir(), name) + "\n\t\t\tsegment_size 3MiB"
				}
				return "long_poll_timeout 5s"
			}
			s := startCaddyfile(t, fmt.Sprintf(directSite, opts("direct")))
			viaGo := startCaddyfile(t, fmt.Sprintf(directSite, opts("go")+"\n\t\t\tdirect_reads off"))
			c := &http.Client{Transport: &http.Transport{DisableCompression: true}}
			defer c.CloseIdleConnections()
			const path = "/v1/stream/direct"
			const total = farChunk + midChunk + 2*readCap + 300_007
			for _, srv := range []*server{s, viaGo} {
				url := srv.base + path
				if r := mustSend(t, c, http.MethodPut, url, map[string]string{"Content-Type": "application/octet-stream"}, nil); r.status != http.StatusCreated {
					t.Fatalf("PUT: %d %q", r.status, r.body)
				}
				appendPattern(t, c, url, 0, total, 300_007)
			}
			before := directCount(t, s, c)

			// A catch-up over one connection, each head compared with the
			// one net/http writes, then /health on the same connection.
			host := strings.TrimPrefix(s.base, "http://")
			conn, err := net.Dial("tcp", host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			raw := &rawConn{host: host, conn: conn, br: br}
			goHost := strings.TrimPrefix(viaGo.base, "http://")
			goConn, err := net.Dial("tcp", goHost)
			if err != nil {
				t.Fatal(err)
			}
			defer goConn.Close()
			goBr := bufio.NewReader(goConn)
			heads := func(p string) {
				t.Helper()
				head, body := rawHead(t, conn, br, host, http.MethodGet, p)
				goHead, goBody := rawHead(t, goConn, goBr, goHost, http.MethodGet, p)
				if withoutDate(head) != withoutDate(goHead) || !bytes.Equal(body, goBody) {
					t.Errorf("GET %s: head\n%q\nand %d bytes; through net/http:\n%q\nand %d bytes", p, head, len(body), goHead, len(goBody))
				}
			}
			pages := 0
			for from := 0; from < total; pages++ {
				heads(path + "?offset=" + offsetAt(from))
				from = checkPage(t, raw, path, from, total)
			}
			odd := []int{1, readCap - 1, readCap, 3<<20 - 1, 3 << 20, 3<<20 + 1, farChunk - 1, total - readCap - 2}
			for _, pos := range odd {
				heads(path + "?offset=" + offsetAt(pos))
				checkPage(t, raw, path, pos, total)
			}
			if r := raw.do(t, http.MethodGet, "/health"); r.status != http.StatusOK || string(r.body) != "OK" {
				t.Fatalf("GET /health after the reads on the same connection: %d %q", r.status, clip(r.body))
			}
			// Pages of 1 MiB or more, each read twice: the 16 MiB, 4 MiB
			// and two 1 MiB chunks of the catch-up and the reads at odd
			// offsets (all at least 1 MiB); none through net/http.
			if want := float64(2 * (pages - 1 + len(odd))); directCount(t, s, c)-before != want {
				t.Errorf("direct_reads_total grew by %v; want %v", directCount(t, s, c)-before, want)
			}
			if n := directCount(t, viaGo, c); n != 0 {
				t.Errorf("direct_reads off: direct_reads_total %v; want 0", n)
			}

			// Pipelined: three requests in one write, answered in order.
			pc, err := net.Dial("tcp", host)
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			req := func(p string) string { return "GET " + p + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n" }
			if _, err := io.WriteString(pc, req(path+"?offset="+offsetAt(5))+req(path+"?offset="+offsetAt(total-readCap-2))+req("/health")); err != nil {
				t.Fatal(err)
			}
			pbr := bufio.NewReader(pc)
			for i, want := range [][]byte{pattern(5, 5+farChunk), pattern(total-readCap-2, total-2)} {
				resp, err := http.ReadResponse(pbr, nil)
				if err != nil {
					t.Fatalf("pipelined answer %d: %v", i, err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
					t.Fatalf("pipelined answer %d: %d, %d bytes (%v); want 200 and %d exact bytes", i, resp.StatusCode, len(body), err, len(want))
				}
			}
			if resp, err := http.ReadResponse(pbr, nil); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("pipelined /health: %v %v", resp, err)
			}

			// Clients that leave after a few KiB of a 16 MiB body.
			files := openFiles(t, s)
			for range 8 {
				lc, err := net.Dial("tcp", host)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.WriteString(lc, req(path+"?offset="+offsetAt(0))); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(lc, make([]byte, 8<<10)); err != nil {
					t.Fatal(err)
				}
				lc.Close()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if !eventually(ctx, 20*time.Millisecond, func() bool { return openFiles(t, s) <= files }) {
				t.Errorf("open descriptors %d after clients left mid-body; %d before", openFiles(t, s), files)
			}
			checkPage(t, dialRaw(t, s.base), path, 0, total)
		})
	}
}
