package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// streamsSite is a Caddyfile serving /v1/stream/* with the durable_streams
// options given (%s) on a port to fill in (%%d).
const streamsSite = `{
	admin off
	auto_https off
}

http://127.0.0.1:%%d {
	respond /health "OK" 200
	route /v1/stream/* {
		durable_streams {
			%s
		}
	}
}
`

// Catch-up reads of a data_dir stream go out with sendfile from its segment
// files (README, "Performance"). Given the same appends, a memory server
// (whose reads are copied) and a data_dir server with small segments must
// answer every read identically: status, headers and bytes, for the pages
// of a full catch-up (4 MiB chunks far from the tail, 1 MiB near it) and
// for reads starting around segment boundaries, GET and HEAD alike.
func TestSendfileReadsMatchCopiedReads(t *testing.T) {
	binary(t)
	mem := startCaddyfile(t, fmt.Sprintf(streamsSite, "long_poll_timeout 5s"))
	disk := startCaddyfile(t, fmt.Sprintf(streamsSite, "data_dir "+filepath.Join(t.TempDir(), "data")+"\n\t\t\tsegment_size 1MiB"))
	c := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer c.CloseIdleConnections()

	const total = 6<<20 + 300_000
	const step = 256 << 10
	content := make([]byte, total)
	for i := range content {
		content[i] = byte('a' + (i*7+i/1000)%26)
	}
	hdr := map[string]string{"Content-Type": "application/octet-stream"}
	for _, s := range []*server{mem, disk} {
		url := s.base + "/v1/stream/big"
		if r := mustSend(t, c, http.MethodPut, url, hdr, nil); r.status != http.StatusCreated {
			t.Fatalf("PUT %s: %d %q", url, r.status, r.body)
		}
		for from := 0; from < total; from += step {
			if r := mustSend(t, c, http.MethodPost, url, hdr, content[from:min(total, from+step)]); r.status != http.StatusNoContent {
				t.Fatalf("POST %s: %d %q", url, r.status, r.body)
			}
		}
	}

	// The offsets of a full catch-up, as the memory server pages it.
	var offsets []string
	var got []byte
	for at := "-1"; len(offsets) < 50; {
		offsets = append(offsets, at)
		r := mustSend(t, c, http.MethodGet, mem.base+"/v1/stream/big?offset="+at, nil, nil)
		got = append(got, r.body...)
		if r.header.Get("Stream-Up-To-Date") == "true" {
			break
		}
		at = r.header.Get("Stream-Next-Offset")
	}
	if !bytes.Equal(got, content) {
		t.Fatalf("memory server's catch-up: %d bytes, not the %d appended", len(got), total)
	}
	if len(offsets) != 4 { // [0, 4 MiB), then 1 MiB, 1 MiB and the rest up to date
		t.Errorf("catch-up took %d pages; want 4 (a 4 MiB chunk far from the tail, then 1 MiB ones)", len(offsets))
	}
	// Reads starting around segment boundaries (the offset format is
	// native/offset.cc's: 16 reserved digits, "_", 16 position digits).
	encode := func(pos int) string { return fmt.Sprintf("0000000000000000_%016d", pos) }
	if want := encode(4 << 20); len(offsets) > 1 && offsets[1] != want {
		t.Fatalf("second page starts at %q; want %q", offsets[1], want)
	}
	for _, pos := range []int{1, 1<<20 - 10, 1 << 20, 1<<20 + 1, 3<<20 - 5000, 5 << 20} {
		offsets = append(offsets, encode(pos))
	}

	// The data_dir server is read over one raw keep-alive connection: a
	// response that sent more bytes than its Content-Length would garble
	// the next one (net/http's client would drop such a connection quietly).
	raw := dialRaw(t, disk.base)
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		for _, at := range offsets {
			path := "/v1/stream/big?offset=" + at
			m := mustSend(t, c, method, mem.base+path, nil, nil)
			d := raw.do(t, method, path)
			if m.status != http.StatusOK || d.status != m.status {
				t.Errorf("%s %s: data_dir %d, memory %d", method, path, d.status, m.status)
				continue
			}
			if !bytes.Equal(d.body, m.body) {
				t.Errorf("%s %s: data_dir sent %d bytes that differ from memory's %d", method, path, len(d.body), len(m.body))
			}
			if method == http.MethodGet && d.header.Get("Content-Length") != fmt.Sprint(len(m.body)) {
				t.Errorf("%s %s: Content-Length %q; want %d", method, path, d.header.Get("Content-Length"), len(m.body))
			}
			for name := range mergedNames(m.header, d.header) {
				if name == "Date" {
					continue
				}
				if mv, dv := strings.Join(m.header.Values(name), ","), strings.Join(d.header.Values(name), ","); mv != dv {
					t.Errorf("%s %s: header %s: data_dir %q, memory %q", method, path, name, dv, mv)
				}
			}
		}
	}
	if r := raw.do(t, http.MethodGet, "/health"); r.status != http.StatusOK || string(r.body) != "OK" {
		t.Errorf("GET /health after the reads on the same connection: %d %q", r.status, clip(r.body))
	}
}

// rawConn sends requests one at a time on one connection and parses each
// answer strictly where the previous one ended.
type rawConn struct {
	host string
	conn net.Conn
	br   *bufio.Reader
}

func dialRaw(t *testing.T, base string) *rawConn {
	t.Helper()
	host := strings.TrimPrefix(base, "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawConn{host: host, conn: conn, br: bufio.NewReader(conn)}
}

func (r *rawConn) do(t *testing.T, method, path string) reply {
	t.Helper()
	if err := r.conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(r.conn, "%s %s HTTP/1.1\r\nHost: %s\r\n\r\n", method, path, r.host); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	req, err := http.NewRequest(method, "http://"+r.host+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r.br, req)
	if err != nil {
		t.Fatalf("%s %s: reading the answer where the previous one ended: %v", method, path, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, path, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: body}
}

func mergedNames(a, b http.Header) map[string]bool {
	names := map[string]bool{}
	for n := range a {
		names[n] = true
	}
	for n := range b {
		names[n] = true
	}
	return names
}
