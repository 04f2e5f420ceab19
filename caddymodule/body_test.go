package caddymodule

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// patternReader serves n bytes of a repeating pattern, counting what was
// read, like a client sending a large body.
type patternReader struct {
	n, read int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.read >= p.n {
		return 0, io.EOF
	}
	k := int(min(int64(len(b)), p.n-p.read))
	for i := range b[:k] {
		b[i] = byte('a' + (p.read+int64(i))%26)
	}
	p.read += int64(k)
	return k, nil
}

func bodyRequest(body io.Reader, contentLength int64) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/stream/s", body)
	r.ContentLength = contentLength
	return r
}

// vmRSS is this process's resident set in bytes.
func vmRSS(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("bad VmRSS line %q", line)
			}
			return kib << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// TestReadBodyCostsItsSize: a large body, chunked or with a length, costs
// its size plus a small constant: the Go heap grows by almost nothing (no
// bytes.Buffer doubling) and the resident set by the body's size, not a
// multiple of it; releasing it gives the memory back at once.
func TestReadBodyCostsItsSize(t *testing.T) {
	const size = 48 << 20
	const limit = 64 << 20
	for _, tc := range []struct {
		name          string
		contentLength int64
	}{
		{"chunked", -1},
		{"content-length", size},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			rss0 := vmRSS(t)

			src := &patternReader{n: size}
			b, err := readBody(bodyRequest(src, tc.contentLength), limit, newBodyBudget(limit))
			if err != nil {
				t.Fatal(err)
			}
			rss1 := vmRSS(t)
			runtime.ReadMemStats(&after)
			if got := len(b.bytes()); got != size || b.tooLarge || b.overBudget {
				t.Fatalf("read %d bytes (tooLarge=%v overBudget=%v), want %d", got, b.tooLarge, b.overBudget, size)
			}
			for _, i := range []int{0, smallBody - 1, smallBody, mappedStep + 7, size - 1} {
				if got, want := b.bytes()[i], byte('a'+i%26); got != want {
					t.Fatalf("byte %d is %q, want %q", i, got, want)
				}
			}
			if heap := after.TotalAlloc - before.TotalAlloc; heap > 1<<20 {
				t.Errorf("reading a %d-byte body allocated %d bytes of Go heap; want at most 1 MiB", size, heap)
			}
			if grew := rss1 - rss0; grew > size+(8<<20) {
				t.Errorf("reading a %d-byte body grew the resident set by %d bytes; want at most size + 8 MiB", size, grew)
			}
			b.release()
			if rss2 := vmRSS(t); rss2-rss0 > 8<<20 {
				t.Errorf("after release the resident set is still %d bytes above where it started", rss2-rss0)
			}
		})
	}
}

// TestReadBodyStopsAtTheLimit: a chunked body over the limit is refused as
// soon as it passes it, without reading or keeping the rest.
func TestReadBodyStopsAtTheLimit(t *testing.T) {
	const limit = 4 << 20
	budget := newBodyBudget(limit)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	src := &patternReader{n: 100 << 20}
	b, err := readBody(bodyRequest(src, -1), limit, budget)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if !b.tooLarge || b.bytes() != nil {
		t.Fatalf("tooLarge=%v with %d bytes kept; want refused, nothing kept", b.tooLarge, len(b.bytes()))
	}
	if src.read > limit+mappedStep {
		t.Errorf("read %d bytes of a body over a %d-byte limit; want at most limit + %d", src.read, limit, mappedStep)
	}
	if heap := after.TotalAlloc - before.TotalAlloc; heap > 1<<20 {
		t.Errorf("refusing the body allocated %d bytes of Go heap", heap)
	}
	if budget.inUse() != 0 {
		t.Errorf("budget holds %d bytes after the refusal; want 0", budget.inUse())
	}
}

// TestReadBodyBudget: bodies reserve their bytes from the in-flight budget;
// one that does not fit is not read, and releasing makes room again.
func TestReadBodyBudget(t *testing.T) {
	const limit = 1 << 20
	budget := newBodyBudget(limit + smallBody)

	first, err := readBody(bodyRequest(&patternReader{n: limit}, limit), limit, budget)
	if err != nil || first.overBudget || len(first.bytes()) != limit {
		t.Fatalf("first body: %v overBudget=%v len=%d", err, first.overBudget, len(first.bytes()))
	}
	if budget.inUse() != limit {
		t.Fatalf("budget in use %d, want %d", budget.inUse(), limit)
	}

	// A second body with a length that does not fit is not even read.
	second, err := readBody(bodyRequest(unreadable{t}, smallBody+1), limit, budget)
	if err != nil || !second.overBudget || second.tooLarge {
		t.Fatalf("second body: %v overBudget=%v tooLarge=%v; want over budget", err, second.overBudget, second.tooLarge)
	}
	// A chunked one is cut off when it outgrows the room left.
	src := &patternReader{n: 512 << 10}
	third, err := readBody(bodyRequest(src, -1), limit, budget)
	if err != nil || !third.overBudget {
		t.Fatalf("third body: %v overBudget=%v; want over budget", err, third.overBudget)
	}
	if src.read > smallBody {
		t.Errorf("read %d bytes of a body with no room; want at most %d", src.read, smallBody)
	}
	// A small one still fits.
	small, err := readBody(bodyRequest(strings.NewReader("hello"), 5), limit, budget)
	if err != nil || small.overBudget || string(small.bytes()) != "hello" {
		t.Fatalf("small body: %v overBudget=%v %q", err, small.overBudget, small.bytes())
	}
	small.release()

	first.release()
	first.release() // twice is harmless
	if budget.inUse() != 0 {
		t.Fatalf("budget in use %d after every release, want 0", budget.inUse())
	}
	again, err := readBody(bodyRequest(&patternReader{n: 512 << 10}, -1), limit, budget)
	if err != nil || again.overBudget || len(again.bytes()) != 512<<10 {
		t.Fatalf("after release: %v overBudget=%v len=%d", err, again.overBudget, len(again.bytes()))
	}
	// While it was read it held max_append_size; complete, only its size.
	if budget.inUse() != 512<<10 {
		t.Fatalf("a complete 512 KiB chunked body holds %d bytes of budget, want %d", budget.inUse(), 512<<10)
	}
	again.release()
	if budget.inUse() != 0 {
		t.Fatalf("budget in use %d, want 0", budget.inUse())
	}
}

// TestReadBodyOnlyForAppendsAndCreates: other methods' bodies stay unread.
func TestReadBodyOnlyForAppendsAndCreates(t *testing.T) {
	for _, m := range []string{http.MethodGet, http.MethodDelete, http.MethodHead, http.MethodOptions} {
		r := httptest.NewRequest(m, "/v1/stream/s", unreadable{t})
		r.ContentLength = -1
		b, err := readBody(r, 10, newBodyBudget(10))
		if err != nil || b.bytes() != nil || b.tooLarge || b.overBudget {
			t.Errorf("%s: %v %q tooLarge=%v overBudget=%v; want nothing read", m, err, b.bytes(), b.tooLarge, b.overBudget)
		}
	}
}
