package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// retentionPattern is byte p of the test stream, so any retained range can be
// checked byte for byte.
func retentionPattern(from, to int) []byte {
	b := make([]byte, 0, to-from)
	for p := from; p < to; p++ {
		b = append(b, byte('a'+(p*7+p/13)%26))
	}
	return b
}

// offsetAt spells position p the way this server does. Offsets are opaque to
// clients; this test knows the format to say which bytes must be left.
func offsetAt(p int) string { return fmt.Sprintf("0000000000000000_%016d", p) }

func positionOf(t *testing.T, offset string) int {
	t.Helper()
	_, digits, ok := strings.Cut(offset, "_")
	p, err := strconv.Atoi(digits)
	if !ok || err != nil {
		t.Fatalf("offset %q is not ours", offset)
	}
	return p
}

// TestRetentionDropsOldSegmentsAndSurvivesRestart runs the real binary with
// 64 KiB segments and a 128 KiB size limit: the background sweep drops the
// old segment files, reads below the earliest kept offset answer 410,
// offset=-1 starts at it, and all of that holds after kill -9.
func TestRetentionDropsOldSegmentsAndSurvivesRestart(t *testing.T) {
	binary(t)
	const (
		kib     = 1 << 10
		segment = 64 * kib
		tail    = 1024 * kib
		keep    = 128 * kib
	)
	dataDir := filepath.Join(t.TempDir(), "data")
	n := newNode(t, dataDir, "segment_size 64KiB\n\t\t\tretention_bytes 128KiB")
	n.start()
	c := n.client
	bin := map[string]string{"Content-Type": "application/octet-stream"}
	if r := mustSend(t, c, http.MethodPut, n.url("log"), bin, nil); r.status != http.StatusCreated {
		t.Fatalf("PUT: %d %q", r.status, r.body)
	}
	for p := 0; p < tail; p += 16 * kib {
		if r := mustSend(t, c, http.MethodPost, n.url("log"), bin, retentionPattern(p, p+16*kib)); r.status != http.StatusNoContent {
			t.Fatalf("POST at %d: %d %q", p, r.status, r.body)
		}
	}
	// Dropping a segment must leave at least 128 KiB after it: the 14
	// segments below 896 KiB go, the last two stay.
	wantStart := tail - keep
	awaitEarliest(t, n, "log", wantStart, 30*time.Second)
	checkRetained(t, n, "log", wantStart, tail)
	// Readers see the new start when the sweep queues its commit; the files
	// go once that commit is durable (acknowledged after the next flush of
	// streams.db under fsync always), so await them rather than race it.
	wantFiles := []string{fmt.Sprintf("%016d.seg", wantStart), fmt.Sprintf("%016d.seg", wantStart+segment)}
	var files []string
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !eventually(ctx, 10*time.Millisecond, func() bool {
		files = segmentFiles(t, dataDir)
		return slices.Equal(files, wantFiles)
	}) {
		t.Errorf("segment files after the sweep: %v; want the two last ones", files)
	}

	n.kill()
	n.start()
	checkRetained(t, n, "log", wantStart, tail)

	// The stream goes on, and the limit follows it.
	more := tail + segment
	for p := tail; p < more; p += 16 * kib {
		if r := mustSend(t, c, http.MethodPost, n.url("log"), bin, retentionPattern(p, p+16*kib)); r.status != http.StatusNoContent {
			t.Fatalf("POST at %d: %d %q", p, r.status, r.body)
		}
	}
	awaitEarliest(t, n, "log", wantStart+segment, 30*time.Second)
	checkRetained(t, n, "log", wantStart+segment, more)
}

// awaitEarliest waits for the sweep to make offset=-1 start at want.
func awaitEarliest(t *testing.T, n *node, name string, want int, limit time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	got := -1
	ok := eventually(ctx, 100*time.Millisecond, func() bool {
		r := mustSend(t, n.client, http.MethodGet, n.url(name)+"?offset=-1", nil, nil)
		if r.status != http.StatusOK {
			return false
		}
		got = positionOf(t, r.header.Get("Stream-Next-Offset")) - len(r.body)
		return got == want
	})
	if !ok {
		t.Fatalf("offset=-1 of %s starts at %d after %v; want %d", name, got, limit, want)
	}
}

// checkRetained checks that [start, end) is readable byte for byte, that
// offsets below start answer 410 for catch-up and live reads alike, and that
// HEAD still reports the tail.
func checkRetained(t *testing.T, n *node, name string, start, end int) {
	t.Helper()
	c := n.client
	for _, below := range []int{0, start - 1} {
		for _, live := range []string{"", "&live=long-poll", "&live=sse"} {
			r := mustSend(t, c, http.MethodGet, n.url(name)+"?offset="+offsetAt(below)+live, nil, nil)
			if r.status != http.StatusGone {
				t.Errorf("GET at %d%s: %d %q; want 410", below, live, r.status, r.body)
			}
		}
	}
	r := mustSend(t, c, http.MethodGet, n.url(name)+"?offset="+offsetAt(start), nil, nil)
	if r.status != http.StatusOK || !bytes.Equal(r.body, retentionPattern(start, end)) {
		t.Errorf("GET at the earliest offset %d: %d, %d bytes; want 200 with bytes [%d, %d)", start, r.status, len(r.body), start, end)
	}
	if next := r.header.Get("Stream-Next-Offset"); next != offsetAt(end) {
		t.Errorf("Stream-Next-Offset %q; want %q", next, offsetAt(end))
	}
	h := mustSend(t, c, http.MethodHead, n.url(name), nil, nil)
	if h.status != http.StatusOK || h.header.Get("Stream-Next-Offset") != offsetAt(end) {
		t.Errorf("HEAD: %d, Stream-Next-Offset %q; want 200 and %q", h.status, h.header.Get("Stream-Next-Offset"), offsetAt(end))
	}
}

// segmentFiles lists the segment files of the only stream in dataDir.
func segmentFiles(t *testing.T, dataDir string) []string {
	t.Helper()
	dirs := segmentDirs(t, dataDir)
	if len(dirs) != 1 {
		t.Fatalf("segments/ holds %v; want one stream directory", dirs)
	}
	entries, err := os.ReadDir(filepath.Join(dataDir, "segments", dirs[0]))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}
