package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
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

// Durability requirement (README, Durability): with fsync always, an
// acknowledged append survives kill -9, and a producer's retry of a batch is
// deduplicated exactly when the batch was acknowledged.
//
// 32 idempotent producers (16 streams x 2 producers each) append numbered
// records, one record per request with Producer-Seq = record number. The
// server is SIGKILLed at random moments and restarted on the same data_dir.
// A request whose outcome is unknown (connection error) is retried with the
// same (id, epoch, seq) once the server is back. In the end every stream
// holds each of its producers' records exactly once and in order, and no
// retry was ever answered with a gap (409).

const (
	crashStreams           = 16
	crashProducersByStream = 2
	crashDefaultKills      = 5
)

func TestCrashKeepsAcknowledgedAppendsExactlyOnce(t *testing.T) {
	binary(t)
	kills := crashDefaultKills
	if v := os.Getenv("DS_E2E_CRASH_KILLS"); v != "" {
		k, err := strconv.Atoi(v)
		if err != nil || k < 1 {
			t.Fatalf("DS_E2E_CRASH_KILLS=%q: want a positive number", v)
		}
		kills = k
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("DS_E2E_CRASH_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("DS_E2E_CRASH_SEED=%q: %v", v, err)
		}
		seed = s
	}
	t.Logf("kill schedule seed %d (DS_E2E_CRASH_SEED reproduces it)", seed)
	// The README's table: every fsync policy survives a process crash with
	// nothing acknowledged lost. "always" is the main case; the others get
	// fewer kills.
	for _, mode := range []struct {
		fsync string
		kills int
	}{{"always", kills}, {"interval 50ms", min(kills, 3)}, {"off", min(kills, 3)}} {
		t.Run(strings.ReplaceAll(mode.fsync, " ", "_"), func(t *testing.T) {
			crashRun(t, "fsync "+mode.fsync, mode.kills, rand.New(rand.NewPCG(seed, 0x5eed)))
		})
	}
}

// crashRun is one server with the given fsync line, killed kills times.
// The second kill also kills the restarted server during its startup
// (recovery), before it answers.
func crashRun(t *testing.T, fsync string, kills int, rng *rand.Rand) {
	n := newNode(t, filepath.Join(t.TempDir(), "data"), fsync)
	n.start()
	for s := 0; s < crashStreams; s++ {
		r := mustSend(t, n.client, http.MethodPut, n.url(fmt.Sprintf("crash-%02d", s)), map[string]string{"Content-Type": "text/plain"}, nil)
		if r.status != http.StatusCreated {
			t.Fatalf("PUT crash-%02d: %d %q", s, r.status, r.body)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	live := newLiveness()
	var stop atomic.Bool
	var totalAcked atomic.Int64

	producers := make([]*crashProducer, crashStreams*crashProducersByStream)
	var wg sync.WaitGroup
	for i := range producers {
		p := &crashProducer{index: i, id: fmt.Sprintf("p%02d", i), stream: i % crashStreams}
		producers[i] = p
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(ctx, n.client, n.url(fmt.Sprintf("crash-%02d", p.stream)), live, &stop, &totalAcked)
		}()
	}

	// The kills: each one at a random moment 200-800 ms after the server
	// came back, and only once appends are being acknowledged again (so
	// every kill lands in the middle of traffic).
	for k := 0; k < kills; k++ {
		since := totalAcked.Load()
		if !eventually(ctx, 5*time.Millisecond, func() bool { return totalAcked.Load() > since || failedProducer(producers) != nil }) {
			t.Fatalf("kill %d: no append was acknowledged within the deadline after the restart", k+1)
		}
		if p := failedProducer(producers); p != nil {
			break
		}
		time.Sleep(time.Duration(200+rng.IntN(601)) * time.Millisecond) // the chaos schedule, not a wait for a condition
		live.down()
		n.kill()
		if k == 1 {
			n.launch()
			time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond) // somewhere in startup and recovery
			n.kill()
		}
		n.start()
		live.serving()
	}

	// Keep going until every producer has had an append acknowledged by
	// the last server, then stop them (each finishes its current record).
	marks := make([]int64, len(producers))
	for i, p := range producers {
		marks[i] = p.acked.Load()
	}
	done := eventually(ctx, 5*time.Millisecond, func() bool {
		for i, p := range producers {
			if p.acked.Load() <= marks[i] && p.err() == nil {
				return false
			}
		}
		return true
	})
	stop.Store(true)
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		t.Fatalf("producers did not finish before the deadline")
	}
	if !done {
		t.Errorf("some producer got no append acknowledged after the last restart")
	}
	for _, p := range producers {
		if err := p.err(); err != nil {
			t.Errorf("producer %s: %v", p.id, err)
		}
	}

	// Every acknowledged record exactly once, in order, per producer.
	var acked, requests, unknown, retriedDup, retriedNew int64
	for _, p := range producers {
		acked += p.acked.Load()
		requests += p.requests
		unknown += p.unknown
		retriedDup += p.retriedDup
		retriedNew += p.retriedNew
	}
	duplicates, missing, garbage := 0, 0, 0
	for s := 0; s < crashStreams; s++ {
		name := fmt.Sprintf("crash-%02d", s)
		data := readStream(t, n.client, n.url(name)).data
		next := map[string]int64{}
		for i := 0; i < crashProducersByStream; i++ {
			next[producers[s+i*crashStreams].id] = 0
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			garbage++
			t.Errorf("%s ends in a partial record: %q", name, clip(data[max(0, len(data)-40):]))
		}
		for line := range bytes.SplitSeq(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
			if len(data) == 0 {
				break
			}
			if len(line) != 10 || line[3] != ':' {
				garbage++
				t.Errorf("%s: malformed record %q", name, clip(line))
				continue
			}
			id := string(line[:3])
			seq, err := strconv.ParseInt(string(line[4:]), 10, 64)
			want, ok := next[id]
			if err != nil || !ok {
				garbage++
				t.Errorf("%s: record %q is not from one of this stream's producers", name, line)
				continue
			}
			switch {
			case seq < want:
				duplicates++
				t.Errorf("%s: %s record %d appears again after record %d", name, id, seq, want-1)
			case seq > want:
				missing += int(seq - want)
				t.Errorf("%s: %s records %d..%d are missing (next is %d)", name, id, want, seq-1, seq)
				next[id] = seq + 1
			default:
				next[id] = seq + 1
			}
		}
		for id, got := range next {
			p := producers[mustAtoi(t, id[1:])]
			if a := p.acked.Load(); got != a {
				if got < a {
					missing += int(a - got)
				}
				t.Errorf("%s: %s has records up to %d; %d were acknowledged (0..%d)", name, id, got-1, a, a-1)
			}
		}
	}
	t.Logf("%s: %d kills (+1 during startup); %d producers on %d streams; %d records acknowledged in %d requests; "+
		"%d requests with an unknown outcome (connection error), retried with the same seq: "+
		"%d answered 204 (had been committed), %d answered 200 (had not); "+
		"found %d duplicates, %d missing, %d malformed records",
		fsync, kills, len(producers), crashStreams, acked, requests, unknown, retriedDup, retriedNew, duplicates, missing, garbage)
	if unknown == 0 {
		t.Errorf("no request had an unknown outcome: the kills did not hit in-flight appends, so retries were not exercised")
	}
}

// crashProducer appends p<NN>:<seq>\n records with Producer-Seq = seq.
type crashProducer struct {
	index  int
	id     string
	stream int
	acked  atomic.Int64 // records 0..acked-1 were acknowledged

	// Owned by the producer's goroutine until it returns.
	requests, unknown, retriedDup, retriedNew int64

	mu     sync.Mutex
	failed error
}

func (p *crashProducer) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed == nil {
		p.failed = err
	}
}

func (p *crashProducer) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

func failedProducer(ps []*crashProducer) *crashProducer {
	for _, p := range ps {
		if p.err() != nil {
			return p
		}
	}
	return nil
}

func (p *crashProducer) run(ctx context.Context, c *http.Client, url string, live *liveness, stop *atomic.Bool, total *atomic.Int64) {
	for seq := 0; !stop.Load(); seq++ {
		body := []byte(fmt.Sprintf("%s:%06d\n", p.id, seq))
		hdr := producerHeaders("text/plain", p.id, 0, seq)
		for attempt := 1; ; attempt++ {
			if ctx.Err() != nil {
				p.fail(fmt.Errorf("deadline while appending seq %d (attempt %d)", seq, attempt))
				return
			}
			p.requests++
			r, err := send(c, http.MethodPost, url, hdr, body)
			if err != nil {
				// Unknown outcome: the server may or may not have committed
				// it. Retry the same (id, epoch, seq) once it serves again.
				p.unknown++
				live.wait(ctx)
				if attempt > 50 {
					p.fail(fmt.Errorf("seq %d: %d attempts, last error %v", seq, attempt, err))
					return
				}
				if attempt > 3 {
					// The server is up but the request keeps failing; do
					// not spin.
					select {
					case <-ctx.Done():
					case <-time.After(time.Duration(attempt) * 10 * time.Millisecond):
					}
				}
				continue
			}
			switch {
			case r.status == http.StatusOK:
				if attempt > 1 {
					p.retriedNew++
				}
			case r.status == http.StatusNoContent && attempt > 1:
				p.retriedDup++
			case r.status == http.StatusNoContent:
				p.fail(fmt.Errorf("seq %d: first attempt answered 204 (duplicate) though it was never sent before", seq))
				return
			case r.status == http.StatusConflict:
				p.fail(fmt.Errorf("seq %d (attempt %d): false 409 %q, Producer-Expected-Seq %q: the server lost acknowledged producer state",
					seq, attempt, r.body, r.header.Get("Producer-Expected-Seq")))
				return
			default:
				p.fail(fmt.Errorf("seq %d (attempt %d): %d %q", seq, attempt, r.status, r.body))
				return
			}
			p.acked.Store(int64(seq + 1))
			total.Add(1)
			break
		}
	}
}

// liveness tells clients when the server serves again after a kill.
type liveness struct {
	mu sync.Mutex
	up chan struct{} // closed while the server serves
}

func newLiveness() *liveness {
	l := &liveness{up: make(chan struct{})}
	close(l.up)
	return l
}

// down is called before the server is killed.
func (l *liveness) down() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.up = make(chan struct{})
}

// serving is called once the restarted server answers /health.
func (l *liveness) serving() {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.up)
}

// wait returns once the server serves (at once if it does now).
func (l *liveness) wait(ctx context.Context) {
	l.mu.Lock()
	ch := l.up
	l.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	v, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
