package e2e

import (
	"fmt"
	"net/http"
	"testing"
)

// A memory stream whose full blocks live in the engine's huge-page arena
// (native/block_arena.h), built by every kind of append: block-sized and
// larger appends written straight into arena slots, small appends that fill
// a heap block and move it there when full, and appends that straddle a
// block's end. A catch-up and reads starting just around each block edge go
// out through direct reads (writev of the pinned blocks) and must match the
// pattern byte for byte.
func TestDirectReadsSendArenaBlocksExactly(t *testing.T) {
	binary(t)
	s := startCaddyfile(t, fmt.Sprintf(directSite, "long_poll_timeout 5s"))
	c := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer c.CloseIdleConnections()
	const path = "/v1/stream/arena"
	url := s.base + path
	if r := mustSend(t, c, http.MethodPut, url, map[string]string{"Content-Type": "application/octet-stream"}, nil); r.status != http.StatusCreated {
		t.Fatalf("PUT: %d %q", r.status, r.body)
	}
	const block = 1 << 20
	// Positions where each append ends: 3 blocks and 17 bytes at once
	// (three straight into the arena), small appends through the next two
	// blocks (sealed when full), 2.5 blocks from the middle of one, then a
	// tail that stays on the heap.
	ends := []int{3*block + 17}
	for p := ends[0]; p < 5*block+4000; p += 100_003 {
		ends = append(ends, min(p+100_003, 5*block+4000))
	}
	ends = append(ends, 7*block+block/2+4000, 20*block+12345, 20*block+12345+999)
	from := 0
	for _, to := range ends {
		appendPattern(t, c, url, from, to, to-from)
		from = to
	}
	total := from
	before := directCount(t, s, c)

	// Reads of 1 MiB or more go out directly: count them.
	raw := dialRaw(t, s.base)
	direct := 0
	read := func(pos int) int {
		next := checkPage(t, raw, path, pos, total)
		if next-pos >= readCap {
			direct++
		}
		return next
	}
	for p := 0; p < total; {
		p = read(p)
	}
	for b := 1; b <= 20; b++ {
		for _, pos := range []int{b*block - 1, b * block, b*block + 1} {
			read(pos)
		}
	}
	if direct < 40 {
		t.Fatalf("only %d reads of 1 MiB or more", direct)
	}
	if got := directCount(t, s, c) - before; got != float64(direct) {
		t.Errorf("direct_reads_total grew by %v; want %d (every read of 1 MiB or more)", got, direct)
	}
}
