package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Forks across a crash: a three-level chain l0 -> l1 -> l2, each with its
// own data, the middle one soft-deleted (410) before a SIGKILL. After the
// restart l2 reads byte for byte and l1 is still 410; deleting l2 collects
// l1, deleting l0 then removes the last of the chain, and no segment
// directory of the chain is left on disk, before or after another restart.
func TestForkChainSurvivesCrashAndIsCollected(t *testing.T) {
	binary(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	// Small streams in segment files (inline_stream_size 0): the test
	// follows their directories.
	n := newNode(t, dataDir, "fsync always\n\t\t\tinline_stream_size 0")
	n.start()
	c := n.client
	text := map[string]string{"Content-Type": "text/plain"}

	must := func(method, name string, hdr map[string]string, body string, want int) reply {
		t.Helper()
		var b []byte
		if body != "" {
			b = []byte(body)
		}
		r := mustSend(t, c, method, n.url(name), hdr, b)
		if r.status != want {
			t.Fatalf("%s %s: %d %q; want %d", method, name, r.status, r.body, want)
		}
		return r
	}
	status := func(name string) int {
		t.Helper()
		return mustSend(t, c, http.MethodHead, n.url(name), nil, nil).status
	}

	// A bystander that must survive everything, so that "no directory left"
	// is checked against what was there before the chain, not just emptiness.
	must(http.MethodPut, "bystander", text, "still here\n", http.StatusCreated)
	before := segmentDirs(t, dataDir)

	// l0: 2 records, forked after the first; then more data l1 must not see.
	must(http.MethodPut, "l0", text, "l0 first\n", http.StatusCreated)
	at0 := must(http.MethodPost, "l0", text, "l0 second\n", http.StatusNoContent).header.Get("Stream-Next-Offset")
	must(http.MethodPost, "l0", text, "l0 after the fork\n", http.StatusNoContent)
	l0Data := "l0 first\nl0 second\nl0 after the fork\n"

	must(http.MethodPut, "l1", map[string]string{"Content-Type": "text/plain", "Stream-Forked-From": "/v1/stream/l0", "Stream-Fork-Offset": at0},
		"l1 own\n", http.StatusCreated)
	at1 := must(http.MethodPost, "l1", text, "l1 more\n", http.StatusNoContent).header.Get("Stream-Next-Offset")
	must(http.MethodPost, "l1", text, "l1 after the fork\n", http.StatusNoContent)
	l1Data := "l0 first\nl0 second\nl1 own\nl1 more\nl1 after the fork\n"

	must(http.MethodPut, "l2", map[string]string{"Content-Type": "text/plain", "Stream-Forked-From": "/v1/stream/l1", "Stream-Fork-Offset": at1},
		"l2 own\n", http.StatusCreated)
	must(http.MethodPost, "l2", text, "l2 more\n", http.StatusNoContent)
	l2Data := "l0 first\nl0 second\nl1 own\nl1 more\nl2 own\nl2 more\n"

	for name, want := range map[string]string{"l0": l0Data, "l1": l1Data, "l2": l2Data} {
		if got := readStream(t, c, n.url(name)).data; string(got) != want {
			t.Fatalf("%s reads %q; want %q", name, got, want)
		}
	}
	chain := difference(segmentDirs(t, dataDir), before)
	if len(chain) != 3 {
		t.Fatalf("the chain has segment directories %v (before it: %v); want 3, one per stream with own data", chain, before)
	}
	l2Head := headSnapshot(t, c, n.url("l2"))

	// Soft delete of the middle: 410, l2 unaffected.
	must(http.MethodDelete, "l1", nil, "", http.StatusNoContent)
	if s := status("l1"); s != http.StatusGone {
		t.Fatalf("HEAD l1 after DELETE (it has a fork): %d; want 410", s)
	}

	n.kill()
	n.start()

	if got := readStream(t, c, n.url("l2")).data; string(got) != l2Data {
		t.Errorf("after SIGKILL: l2 reads %q; want %q", got, l2Data)
	}
	if got := headSnapshot(t, c, n.url("l2")); !mapsEqual(got, l2Head) {
		t.Errorf("after SIGKILL: HEAD l2 %v; was %v", got, l2Head)
	}
	if got := readStream(t, c, n.url("l0")).data; string(got) != l0Data {
		t.Errorf("after SIGKILL: l0 reads %q; want %q", got, l0Data)
	}
	if s := status("l1"); s != http.StatusGone {
		t.Errorf("after SIGKILL: HEAD l1 %d; want 410 (still soft-deleted)", s)
	}
	if r := mustSend(t, c, http.MethodGet, n.url("l1")+"?offset=-1", nil, nil); r.status != http.StatusGone {
		t.Errorf("after SIGKILL: GET l1 %d %q; want 410", r.status, r.body)
	}
	if t.Failed() {
		return
	}

	// Deleting the last fork collects the soft-deleted middle.
	must(http.MethodDelete, "l2", nil, "", http.StatusNoContent)
	if s := status("l2"); s != http.StatusNotFound {
		t.Errorf("HEAD l2 after DELETE: %d; want 404", s)
	}
	if s := status("l1"); s != http.StatusNotFound {
		t.Errorf("HEAD l1 after its last fork was deleted: %d; want 404 (collected)", s)
	}
	if got := readStream(t, c, n.url("l0")).data; string(got) != l0Data {
		t.Errorf("l0 after l1 and l2 are gone reads %q; want %q", got, l0Data)
	}
	must(http.MethodDelete, "l0", nil, "", http.StatusNoContent)
	for _, name := range []string{"l0", "l1", "l2"} {
		if s := status(name); s != http.StatusNotFound {
			t.Errorf("HEAD %s after the chain is deleted: %d; want 404", name, s)
		}
	}

	// No directory of the chain is left, now and after another crash.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !eventually(ctx, 20*time.Millisecond, func() bool { return slices.Equal(segmentDirs(t, dataDir), before) }) {
		t.Errorf("segments/ holds %v after the chain was deleted; want %v (the chain's were %v)", segmentDirs(t, dataDir), before, chain)
	}
	n.kill()
	n.start()
	if got := segmentDirs(t, dataDir); !slices.Equal(got, before) {
		t.Errorf("after another SIGKILL: segments/ holds %v; want %v", got, before)
	}
	for _, name := range []string{"l0", "l1", "l2"} {
		if s := status(name); s != http.StatusNotFound {
			t.Errorf("after another SIGKILL: HEAD %s %d; want 404", name, s)
		}
	}
	if got := readStream(t, c, n.url("bystander")).data; string(got) != "still here\n" {
		t.Errorf("bystander reads %q", got)
	}
	// The name is free again: a new l1 is a new, empty stream.
	must(http.MethodPut, "l1", text, "", http.StatusCreated)
	if got := readStream(t, c, n.url("l1")).data; len(got) != 0 {
		t.Errorf("a new l1 reads %q; want nothing", got)
	}
}

// difference is the names in a that are not in b.
func difference(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// A fork's bytes never change. STORAGE_FORMAT.md (Recovery, step 3; fsync
// interval and off) says that after a power loss a stream can come back
// with a recorded tail past its bytes, and recovery then lowers its tail.
// If that stream is a fork source and its tail drops below a fork's
// fork_offset, the fork must not start serving the source's later appends
// as its own history: reading it may fail, but a 200 must carry the bytes
// it had.
//
// The power loss is simulated by truncating the source's segment file while
// the server is stopped, the state the kernel can leave when it wrote LMDB's
// pages back before the segment's.
func TestForkKeepsItsBytesWhenRecoveryLowersTheSource(t *testing.T) {
	binary(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	// Small streams in segment files (inline_stream_size 0): the test
	// follows their directories.
	n := newNode(t, dataDir, "fsync always\n\t\t\tinline_stream_size 0")
	n.start()
	c := n.client
	text := map[string]string{"Content-Type": "text/plain"}
	source := strings.Repeat("s", 1000)
	if r := mustSend(t, c, http.MethodPut, n.url("src"), text, []byte(source)); r.status != http.StatusCreated {
		t.Fatalf("PUT src: %d %q", r.status, r.body)
	}
	dirs := segmentDirs(t, dataDir)
	if len(dirs) != 1 {
		t.Fatalf("segments/ holds %v; want src's directory only", dirs)
	}
	srcSegment := filepath.Join(dataDir, "segments", dirs[0], fmt.Sprintf("%016d.seg", 0))
	if r := mustSend(t, c, http.MethodPut, n.url("fork"), map[string]string{"Content-Type": "text/plain", "Stream-Forked-From": "/v1/stream/src"},
		[]byte("fork's own\n")); r.status != http.StatusCreated {
		t.Fatalf("PUT fork: %d %q", r.status, r.body)
	}
	forkData := source + "fork's own\n"
	if got := readStream(t, c, n.url("fork")).data; string(got) != forkData {
		t.Fatalf("fork reads %q; want %q", clip(got), clip([]byte(forkData)))
	}
	n.terminate()

	if err := os.Truncate(srcSegment, 10); err != nil {
		t.Fatal(err)
	}
	n.start()
	if !strings.Contains(n.srv.Output.String(), "lowering the tail") {
		t.Logf("no 'lowering the tail' warning on stderr:\n%s", tail(n.srv.Output.String(), 20))
	}
	// The source takes new appends past the fork point.
	r := mustSend(t, c, http.MethodPost, n.url("src"), text, []byte(strings.Repeat("N", 1200)))
	t.Logf("append to the lowered source: %d %q", r.status, r.body)

	for _, when := range []string{"after the source was lowered and appended to", "after another restart"} {
		got, status, body := readAllPages(t, c, n.url("fork"))
		switch {
		case status != http.StatusOK:
			t.Logf("%s: reading the fork fails with %d %q (acceptable: its history was lost)", when, status, body)
		case string(got) != forkData:
			t.Errorf("%s: the fork answers 200 with %d bytes %q; it had %q: it serves its source's new appends as its own history",
				when, len(got), clip(got), clip([]byte(forkData)))
		}
		n.kill()
		n.start()
	}
}

// readAllPages reads url from the start like readStream, but returns the
// first non-200 status instead of failing.
func readAllPages(t *testing.T, c *http.Client, url string) (data []byte, status int, body string) {
	t.Helper()
	offset := "-1"
	for i := 0; i < 10_000; i++ {
		r := mustSend(t, c, http.MethodGet, url+"?offset="+offset, nil, nil)
		if r.status != http.StatusOK {
			return data, r.status, string(r.body)
		}
		data = append(data, r.body...)
		if r.header.Get("Stream-Up-To-Date") == "true" {
			return data, http.StatusOK, ""
		}
		offset = r.header.Get("Stream-Next-Offset")
	}
	t.Fatalf("GET %s: more than 10,000 pages", url)
	return nil, 0, ""
}
