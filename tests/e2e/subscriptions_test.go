package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"
)

// Subscriptions (PROTOCOL.md §6–§7) on the real binary with data_dir: a
// pool of pull-wake workers processes every stream exactly once per acked
// offset, and after SIGKILL no cursor moves back, acknowledged acks are
// kept, leases and tokens survive, and pending work is woken again.

type subStream struct {
	Path        string `json:"path"`
	LinkType    string `json:"link_type"`
	AckedOffset string `json:"acked_offset"`
	TailOffset  string `json:"tail_offset"`
	HasPending  bool   `json:"has_pending"`
}

type subState struct {
	ID         string      `json:"id"`
	Streams    []subStream `json:"streams"`
	Generation uint64      `json:"generation"`
	Status     string      `json:"status"`
}

type claimReply struct {
	WakeID     string      `json:"wake_id"`
	Generation uint64      `json:"generation"`
	Token      string      `json:"token"`
	Streams    []subStream `json:"streams"`
}

func subURL(n *node, id string) string { return n.url("__ds/subscriptions/" + id) }

func getSub(t *testing.T, n *node, id string) subState {
	t.Helper()
	r := mustSend(t, n.client, "GET", subURL(n, id), nil, nil)
	if r.status != 200 {
		t.Fatalf("GET subscription %s: %d %s", id, r.status, r.body)
	}
	var s subState
	if err := json.Unmarshal(r.body, &s); err != nil {
		t.Fatalf("GET subscription %s: %v: %s", id, err, r.body)
	}
	return s
}

func jsonHdr() map[string]string { return map[string]string{"Content-Type": "application/json"} }

func TestSubscriptionsPullWakePoolExactlyOnce(t *testing.T) {
	binary(t)
	n := newNode(t, filepath.Join(t.TempDir(), "data"), "fsync always")
	n.start()
	defer n.terminate()
	c := n.client

	if r := mustSend(t, c, "PUT", n.url("wake/pool"), jsonHdr(), []byte("[]")); r.status != 201 {
		t.Fatalf("create wake stream: %d %s", r.status, r.body)
	}
	r := mustSend(t, c, "PUT", subURL(n, "pool"), jsonHdr(),
		[]byte(`{"type":"pull-wake","pattern":"work/*","wake_stream":"wake/pool","lease_ttl_ms":5000}`))
	if r.status != 201 {
		t.Fatalf("create subscription: %d %s", r.status, r.body)
	}
	const streams, appends = 100, 3
	for i := 0; i < streams; i++ {
		if r := mustSend(t, c, "PUT", n.url(fmt.Sprintf("work/s%d", i)), jsonHdr(), []byte(`{"n":0}`)); r.status != 201 {
			t.Fatalf("create work/s%d: %d", i, r.status)
		}
	}
	// Appends race with the workers.
	go func() {
		for k := 1; k < appends; k++ {
			for i := 0; i < streams; i++ {
				send(c, "POST", n.url(fmt.Sprintf("work/s%d", i)), jsonHdr(), []byte(fmt.Sprintf(`{"n":%d}`, k)))
			}
		}
	}()

	type span struct{ from, to string }
	var mu sync.Mutex
	processed := map[string][]span{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			worker := fmt.Sprintf("worker-%d", w)
			for ctx.Err() == nil {
				r, err := send(c, "POST", subURL(n, "pool")+"/claim", jsonHdr(), []byte(`{"worker":"`+worker+`"}`))
				if err != nil || r.status != 200 {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				var cl claimReply
				if err := json.Unmarshal(r.body, &cl); err != nil {
					t.Errorf("claim: %v", err)
					return
				}
				var acks []map[string]string
				mu.Lock()
				for _, s := range cl.Streams {
					if s.HasPending {
						processed[s.Path] = append(processed[s.Path], span{s.AckedOffset, s.TailOffset})
						acks = append(acks, map[string]string{"stream": s.Path, "offset": s.TailOffset})
					}
				}
				mu.Unlock()
				body, _ := json.Marshal(map[string]any{"wake_id": cl.WakeID, "generation": cl.Generation, "acks": acks, "done": true})
				ack := mustSend(t, c, "POST", subURL(n, "pool")+"/ack",
					map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + cl.Token}, body)
				if ack.status != 200 {
					t.Errorf("%s: ack: %d %s", worker, ack.status, ack.body)
					return
				}
			}
		}(w)
	}
	// Done when every stream is acked at its final tail.
	done := eventually(ctx, 20*time.Millisecond, func() bool {
		s := getSub(t, n, "pool")
		if len(s.Streams) != streams {
			return false
		}
		for _, st := range s.Streams {
			h := mustSend(t, c, "HEAD", n.url(st.Path), nil, nil)
			tail := h.header.Get("Stream-Next-Offset")
			if st.AckedOffset != tail {
				return false
			}
			// Only the final tail counts: all appends are in.
			var msgs []json.RawMessage
			g := mustSend(t, c, "GET", n.url(st.Path)+"?offset=-1", nil, nil)
			if json.Unmarshal(g.body, &msgs) != nil || len(msgs) != appends {
				return false
			}
		}
		return true
	})
	cancel()
	wg.Wait()
	if !done {
		t.Fatalf("the pool did not ack every stream at its tail in time: %+v", getSub(t, n, "pool"))
	}
	// Each stream's processed spans tile [start, tail] with no overlap: every
	// acked offset was processed exactly once.
	mu.Lock()
	defer mu.Unlock()
	if len(processed) != streams {
		t.Fatalf("processed %d streams; want %d", len(processed), streams)
	}
	zero := "0000000000000000_0000000000000000"
	for path, spans := range processed {
		sort.Slice(spans, func(i, j int) bool { return spans[i].from < spans[j].from })
		at := zero
		for _, s := range spans {
			if s.from != at || s.to <= s.from {
				t.Fatalf("%s: spans %v: a gap or an overlap at %s", path, spans, at)
			}
			at = s.to
		}
	}
}

func TestSubscriptionsSurviveSIGKILL(t *testing.T) {
	binary(t)
	// A webhook receiver that accepts and never answers done: the wake stays
	// in flight and is delivered again after the restart.
	var mu sync.Mutex
	var deliveries []map[string]any
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		deliveries = append(deliveries, body)
		mu.Unlock()
		w.WriteHeader(200)
		w.Write([]byte(`{}`))
	}))
	defer recv.Close()

	n := newNode(t, filepath.Join(t.TempDir(), "data"), "fsync always\n\t\t\twebhook_allow_dev on")
	n.start()
	c := n.client
	mustSend(t, c, "PUT", n.url("wake/q"), jsonHdr(), []byte("[]"))
	if r := mustSend(t, c, "PUT", subURL(n, "pull"), jsonHdr(),
		[]byte(`{"type":"pull-wake","pattern":"jobs/*","wake_stream":"wake/q","lease_ttl_ms":60000}`)); r.status != 201 {
		t.Fatalf("create pull: %d %s", r.status, r.body)
	}
	if r := mustSend(t, c, "PUT", subURL(n, "hook"), jsonHdr(),
		[]byte(`{"type":"webhook","pattern":"jobs/*","webhook":{"url":"`+recv.URL+`/h"},"lease_ttl_ms":60000}`)); r.status != 201 {
		t.Fatalf("create hook: %d %s", r.status, r.body)
	}
	mustSend(t, c, "PUT", n.url("jobs/a"), jsonHdr(), []byte(`{"n":1}`))
	mustSend(t, c, "PUT", n.url("jobs/b"), jsonHdr(), []byte(`{"n":1}`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var cl claimReply
	if !eventually(ctx, 10*time.Millisecond, func() bool {
		r := mustSend(t, c, "POST", subURL(n, "pull")+"/claim", jsonHdr(), []byte(`{"worker":"w1"}`))
		if r.status != 200 {
			return false
		}
		json.Unmarshal(r.body, &cl)
		return len(cl.Streams) == 2
	}) {
		t.Fatalf("no claim")
	}
	var tailA string
	for _, s := range cl.Streams {
		if s.Path == "jobs/a" {
			tailA = s.TailOffset
		}
	}
	auth := map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + cl.Token}
	ackA, _ := json.Marshal(map[string]any{"wake_id": cl.WakeID, "generation": cl.Generation,
		"acks": []map[string]string{{"stream": "jobs/a", "offset": tailA}}})
	if r := mustSend(t, c, "POST", subURL(n, "pull")+"/ack", auth, ackA); r.status != 200 {
		t.Fatalf("ack: %d %s", r.status, r.body)
	}
	if !eventually(ctx, 10*time.Millisecond, func() bool { mu.Lock(); defer mu.Unlock(); return len(deliveries) >= 1 }) {
		t.Fatalf("no webhook delivery")
	}
	before := getSub(t, n, "pull")
	hookBefore := getSub(t, n, "hook")

	n.kill()
	n.start()
	defer n.terminate()

	after := getSub(t, n, "pull")
	if after.Generation != before.Generation {
		t.Errorf("pull generation %d after restart; want %d (lease held)", after.Generation, before.Generation)
	}
	for i, s := range after.Streams {
		if s.AckedOffset < before.Streams[i].AckedOffset || s.Path != before.Streams[i].Path {
			t.Errorf("cursor moved back: %+v, was %+v", s, before.Streams[i])
		}
		if s.Path == "jobs/a" && s.AckedOffset != tailA {
			t.Errorf("acknowledged ack lost: jobs/a at %s; want %s", s.AckedOffset, tailA)
		}
	}
	// The lease survived: still w1's, and its token (same secret) still works.
	if r := mustSend(t, c, "POST", subURL(n, "pull")+"/claim", jsonHdr(), []byte(`{"worker":"w2"}`)); r.status != 409 {
		t.Errorf("claim after restart: %d %s; want 409 ALREADY_CLAIMED", r.status, r.body)
	}
	doneBody, _ := json.Marshal(map[string]any{"wake_id": cl.WakeID, "generation": cl.Generation, "done": true})
	r := mustSend(t, c, "POST", subURL(n, "pull")+"/ack", auth, doneBody)
	if r.status != 200 || string(r.body) != `{"ok":true,"next_wake":true}` {
		t.Fatalf("done after restart: %d %s; want 200 next_wake true (jobs/b is pending)", r.status, r.body)
	}
	// Pending work is woken again: a wake event for a newer generation.
	if !eventually(ctx, 10*time.Millisecond, func() bool {
		g := mustSend(t, c, "GET", n.url("wake/q")+"?offset=-1", nil, nil)
		var evs []map[string]any
		json.Unmarshal(g.body, &evs)
		for _, e := range evs {
			if e["subscription_id"] == "pull" && uint64(e["generation"].(float64)) > before.Generation {
				return true
			}
		}
		return false
	}) {
		t.Errorf("no wake event for the pending work after restart")
	}
	// The webhook wake in flight is delivered again, same generation.
	if !eventually(ctx, 10*time.Millisecond, func() bool { mu.Lock(); defer mu.Unlock(); return len(deliveries) >= 2 }) {
		t.Fatalf("the webhook wake in flight was not delivered again after restart")
	}
	mu.Lock()
	last := deliveries[len(deliveries)-1]
	mu.Unlock()
	if uint64(last["generation"].(float64)) != hookBefore.Generation {
		t.Errorf("redelivered generation %v; want %d", last["generation"], hookBefore.Generation)
	}
}
