//go:build linux

package native

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// rssKiB is the process's resident set (statm's second field) in KiB.
func rssKiB(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skip("no /proc/self/statm")
	}
	f := strings.Fields(string(b))
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pages * int64(os.Getpagesize()) / 1024
}

// Streams deleted in between others leave freed engine memory in the
// middle of glibc's arenas, where free() keeps it resident; TrimMalloc
// gives it back.
func TestTrimMallocReturnsFreedEngineMemory(t *testing.T) {
	if !trimsMalloc {
		t.Skip("not glibc: TrimMalloc does nothing")
	}
	e := open(t, Options{})
	const streams = 4000
	body := strings.Repeat("x", 8192)
	for i := range streams {
		path := fmt.Sprintf("/v1/stream/trim-%d", i)
		r := handle(t, e, request("PUT", path, "", map[Field]string{FieldContentType: "text/plain"}, body), 0)
		if r.Status() != 201 {
			t.Fatalf("PUT %s: %d", path, r.Status())
		}
		r.Release()
	}
	for i := 0; i < streams; i += 2 {
		r := handle(t, e, request("DELETE", fmt.Sprintf("/v1/stream/trim-%d", i), "", nil, ""), 0)
		if r.Status() != 204 {
			t.Fatalf("DELETE: %d", r.Status())
		}
		r.Release()
	}
	runtime.GC()
	before := rssKiB(t)
	TrimMalloc()
	after := rssKiB(t)
	t.Logf("RSS %d KiB before the trim, %d after", before, after)
	// Half the streams' bytes (16 MB) were freed between live ones.
	if before-after < 4096 {
		t.Fatalf("TrimMalloc gave back %d KiB, want at least 4096", before-after)
	}
}
