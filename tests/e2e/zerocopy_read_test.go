package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Catch-up reads are written without a copy through a buffer: a memory
// stream's from its blocks (pinned while they are written), a data_dir
// stream's from its segment files (sendfile), in chunks of farChunk bytes
// while at least readCap more lie past them, then midChunk, then readCap
// (README, "Performance"; docs/large-reads-and-durable-appends.md).
const (
	readCap  = 1 << 20
	midChunk = 4 << 20
	farChunk = 16 << 20
)

// patternByte is the stream's byte at position p: every position has a
// known byte, so a page can be checked wherever it starts.
func patternByte(p int) byte { return byte('a' + (p*7+p/1000)%26) }

func pattern(from, to int) []byte {
	b := make([]byte, to-from)
	for i := range b {
		b[i] = patternByte(from + i)
	}
	return b
}

// chunkEnd is where a catch-up read of a byte stream from `from` ends when
// the tail is `tail`.
func chunkEnd(from, tail int) int {
	switch {
	case tail-from >= farChunk+readCap:
		return from + farChunk
	case tail-from >= midChunk+readCap:
		return from + midChunk
	case tail-from > readCap:
		return from + readCap
	default:
		return tail
	}
}

// checkPage reads one page over raw (a response longer or shorter than its
// Content-Length breaks the next one on that connection) and checks its
// status, length, next offset and every byte against the pattern.
func checkPage(t *testing.T, raw *rawConn, path string, from, tail int) (next int) {
	t.Helper()
	r := raw.do(t, http.MethodGet, path+"?offset="+offsetAt(from))
	if r.status != http.StatusOK {
		t.Fatalf("GET from %d: %d %q", from, r.status, clip(r.body))
	}
	want := chunkEnd(from, tail)
	next = positionOf(t, r.header.Get("Stream-Next-Offset"))
	if next != want || len(r.body) != want-from {
		t.Fatalf("GET from %d (tail %d): %d bytes, next %d; want %d bytes, next %d", from, tail, len(r.body), next, want-from, want)
	}
	if cl := r.header.Get("Content-Length"); cl != strconv.Itoa(len(r.body)) {
		t.Errorf("GET from %d: Content-Length %q for %d bytes", from, cl, len(r.body))
	}
	for i, b := range r.body {
		if b != patternByte(from+i) {
			t.Fatalf("GET from %d: byte at %d is %q; want %q", from, from+i, b, patternByte(from+i))
		}
	}
	if cc := r.header.Get("Cache-Control"); cc != "public, max-age=60, stale-while-revalidate=300" {
		t.Errorf("GET from %d: Cache-Control %q", from, cc)
	}
	if et := r.header.Get("Etag"); !strings.HasSuffix(et, ":"+strconv.Itoa(want)+`"`) {
		t.Errorf("GET from %d: ETag %q does not end at %d", from, et, want)
	}
	return next
}

func appendPattern(t *testing.T, c *http.Client, url string, from, to, step int) {
	t.Helper()
	hdr := map[string]string{"Content-Type": "application/octet-stream"}
	for p := from; p < to; p += step {
		if r := mustSend(t, c, http.MethodPost, url, hdr, pattern(p, min(to, p+step))); r.status != http.StatusNoContent {
			t.Fatalf("POST %s: %d %q", url, r.status, r.body)
		}
	}
}

// In memory and with data_dir: a full catch-up, reads starting inside
// blocks, segments and appends and just around their boundaries, and a
// catch-up racing appends, each page checked byte for byte; with data_dir
// also the first reads after a restart (blocks not yet checked against
// their checksums) and the reads after them.
func TestCatchUpReadsSendExactBytesFromBlocksAndFiles(t *testing.T) {
	binary(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	diskSite := fmt.Sprintf(streamsSite, "data_dir "+dataDir+"\n\t\t\tsegment_size 3MiB")
	for _, mode := range []string{"memory", "data_dir"} {
		t.Run(mode, func(t *testing.T) {
			memSite := fmt.Sprintf(streamsSite, "long_poll_timeout 5s")
			if mode == "data_dir" {
				memSite = diskSite
			}
			s := startCaddyfile(t, memSite)
			c := &http.Client{Transport: &http.Transport{DisableCompression: true}}
			defer c.CloseIdleConnections()
			url := s.base + "/v1/stream/big"
			if r := mustSend(t, c, http.MethodPut, url, map[string]string{"Content-Type": "application/octet-stream"}, nil); r.status != http.StatusCreated {
				t.Fatalf("PUT: %d %q", r.status, r.body)
			}
			// Appends of an odd size: they straddle block (1 MiB) and
			// segment (3 MiB) boundaries.
			const total = farChunk + 2*readCap + 300_007
			appendPattern(t, c, url, 0, total, 300_007)

			raw := dialRaw(t, s.base)
			pages := 0
			for from := 0; from < total; pages++ {
				from = checkPage(t, raw, "/v1/stream/big", from, total)
			}
			if pages != 4 { // one far chunk, two capped ones, then the rest
				t.Errorf("full catch-up took %d pages; want 4", pages)
			}
			for _, pos := range []int{1, readCap - 10, readCap, readCap + 1, 3<<20 - 1, 3 << 20, 3<<20 + 1,
				300_007*5 + 3, farChunk - 1, total - midChunk - readCap, total - midChunk - readCap + 1,
				total - readCap - 1, total - readCap + 17, total - 1} {
				checkPage(t, raw, "/v1/stream/big", pos, total)
			}

			// Appends while a reader catches up: every page is exact for
			// the tail it was cut at.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			const grown = total + 40*100_003
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				ac := &http.Client{Transport: &http.Transport{DisableCompression: true}}
				defer ac.CloseIdleConnections()
				appendPattern(t, ac, url, total, grown, 100_003)
			}()
			raced := dialRaw(t, s.base)
			for from := 0; from < grown && ctx.Err() == nil; {
				r := raced.do(t, http.MethodGet, "/v1/stream/big?offset="+offsetAt(from))
				if r.status != http.StatusOK {
					t.Fatalf("GET from %d while appending: %d %q", from, r.status, clip(r.body))
				}
				next := positionOf(t, r.header.Get("Stream-Next-Offset"))
				if next != from+len(r.body) || next > grown {
					t.Fatalf("GET from %d while appending: %d bytes, next %d", from, len(r.body), next)
				}
				for i, b := range r.body {
					if b != patternByte(from+i) {
						t.Fatalf("GET from %d while appending: byte at %d is %q; want %q", from, from+i, b, patternByte(from+i))
					}
				}
				from = next
			}
			wg.Wait()

			if mode != "data_dir" {
				return
			}
			// After a restart no block is checked yet: the first far chunk
			// checks them as it goes, then both reads send the files.
			s.Stop()
			s = startCaddyfile(t, diskSite)
			raw = dialRaw(t, s.base)
			for range 2 {
				for from := 0; from < grown; {
					from = checkPage(t, raw, "/v1/stream/big", from, grown)
				}
			}
		})
	}
}
