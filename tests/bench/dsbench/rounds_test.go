package main

import "testing"

func TestMergeRounds(t *testing.T) {
	rec := func(srv string, p99, rss float64, extra map[string]float64) Record {
		return Record{Scenario: "fanout-sse", Server: srv, Status: "ok", P99Ms: p99, P50Ms: p99 / 2, MaxMs: p99 + 1, RSSPerSubKiB: rss, Extra: extra}
	}
	recs := []Record{
		{Scenario: "append-1", Server: "ours-mem", Status: "ok", Throughput: 5},
		rec("ours-mem", 10, 1.5, map[string]float64{"threads_marker": 2}),
		rec("rust-mem", 10, 0.9, nil),
		{Scenario: "fanout-sse", Server: "rust-mem", Status: "error", Note: "boom"},
		rec("ours-mem", 40, 2.0, map[string]float64{"threads_marker": 1}),
		rec("ours-mem", 50, 1.8, map[string]float64{"threads_marker": 3}),
		rec("rust-mem", 20, 1.0, nil),
	}
	got := mergeRounds(recs)
	if len(got) != 3 || got[0].Scenario != "append-1" || got[1].Server != "ours-mem" || got[2].Server != "rust-mem" {
		t.Fatalf("merged = %+v", got)
	}
	ours, rust := got[1], got[2]
	if ours.P99Ms != 40 || ours.RSSPerSubKiB != 1.8 || ours.P50Ms != 20 || ours.MaxMs != 41 {
		t.Errorf("ours: p99 %v rss %v p50 %v max %v, want 40 1.8 20 41", ours.P99Ms, ours.RSSPerSubKiB, ours.P50Ms, ours.MaxMs)
	}
	if ours.Extra["threads_marker"] != 1 || ours.Extra["rounds"] != 3 || ours.Extra["round_2_p99_ms"] != 40 || ours.Extra["round_3_rss_per_sub_kib"] != 1.8 {
		t.Errorf("ours extra = %v", ours.Extra)
	}
	if want := "median of 3 rounds: p99 10.0, 40.0, 50.0 ms; RSS/sub 1.5, 2.0, 1.8 KiB"; ours.Note != want {
		t.Errorf("ours note %q, want %q", ours.Note, want)
	}
	// Two of three ok: the median of the two, the failed round named, the
	// rounds keep their numbers.
	if rust.Status != "ok" || rust.P99Ms != 15 || rust.RSSPerSubKiB != 0.95 || rust.Extra["rounds"] != 3 || rust.Extra["round_3_p99_ms"] != 20 {
		t.Errorf("rust: %+v", rust)
	}
	if want := "median of 2 rounds: p99 10.0, 20.0 ms; RSS/sub 0.9, 1.0 KiB; round 2 error: boom"; rust.Note != want {
		t.Errorf("rust note %q, want %q", rust.Note, want)
	}
	// Paired rounds: 10 ≤ 10 in round 1, 50 > 20 in round 3; round 2 only
	// ours.
	if met, n, ok := roundsAtOrBelow(ours, rust); !ok || met != 1 || n != 2 {
		t.Errorf("roundsAtOrBelow = %d of %d (%v), want 1 of 2", met, n, ok)
	}
	// Most rounds failed: the pair is not ok.
	bad := mergeRounds([]Record{
		rec("ours-disk", 5, 1, nil),
		{Scenario: "fanout-sse", Server: "ours-disk", Status: "error", Note: "x"},
	})
	if len(bad) != 1 || bad[0].Status != "error" || bad[0].Note != "1 of 2 rounds ok; round 2 error: x" {
		t.Errorf("half failed: %+v", bad)
	}
	// One round: unchanged.
	one := mergeRounds([]Record{rec("ours-mem", 7, 1, nil)})
	if one[0].Note != "" || one[0].Extra != nil {
		t.Errorf("single round changed: %+v", one[0])
	}
}
