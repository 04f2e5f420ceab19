package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// Catch-up reads of a data_dir stream go out with sendfile from its segment
// files (README, "Performance"). Given the same appends, a memory server
// (whose reads are copied) and a data_dir server with small segments must
// answer every read identically: status, headers and bytes, for the pages
// of a full catch-up (4 MiB chunks far from the tail, 1 MiB near it) and
// for reads starting around segment boundaries, GET and HEAD alike.
func TestSendfileReadsMatchCopiedReads(t *testing.T) {
	binary(t)
	site := `{
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
	mem := startCaddyfile(t, fmt.Sprintf(site, "long_poll_timeout 5s"))
	disk := startCaddyfile(t, fmt.Sprintf(site, "data_dir "+filepath.Join(t.TempDir(), "data")+"\n\t\t\tsegment_size 1MiB"))
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

	for _, method := range []string{http.MethodGet, http.MethodHead} {
		for _, at := range offsets {
			path := "/v1/stream/big?offset=" + at
			m := mustSend(t, c, method, mem.base+path, nil, nil)
			d := mustSend(t, c, method, disk.base+path, nil, nil)
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
