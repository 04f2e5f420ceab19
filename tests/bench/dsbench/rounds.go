package main

import (
	"fmt"
	"strings"
)

// Rounds: run.sh may measure a scenario on one server several times (the
// fan-out scenarios, ours and Rust alternating round by round), because on
// a shared machine one round's p99 moves by several times between rounds.
// Those records share scenario/server in results.jsonl, in round order. The
// report shows one row per pair: the median p99 and the median RSS per
// subscriber of its ok rounds, each round's values in the note and in
// Extra (round_<i>_p99_ms, round_<i>_rss_per_sub_kib), so that "≤ Rust" is
// judged on medians of one run and each round stays visible.

// mergeRounds folds the records of one scenario/server pair into one,
// keeping the first appearance's position. A pair measured once is
// returned unchanged.
func mergeRounds(recs []Record) []Record {
	groups := map[string][]Record{}
	var order []string
	for _, r := range recs {
		k := r.Scenario + "/" + r.Server
		if _, seen := groups[k]; !seen {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	out := make([]Record, 0, len(order))
	for _, k := range order {
		out = append(out, mergeGroup(groups[k]))
	}
	return out
}

func mergeGroup(g []Record) Record {
	if len(g) == 1 {
		return g[0]
	}
	var ok []Record
	var roundOf []int // round number (from 1) of each ok record
	var failed []string
	for i, r := range g {
		if r.Status == "ok" {
			ok = append(ok, r)
			roundOf = append(roundOf, i+1)
		} else {
			failed = append(failed, fmt.Sprintf("round %d %s: %s", i+1, r.Status, r.Note))
		}
	}
	// A pair is ok only if most of its rounds are: a server that fails
	// half the time is not summarised by its good rounds.
	if 2*len(ok) <= len(g) {
		r := g[len(g)-1]
		for _, x := range g {
			if x.Status != "ok" {
				r = x
				break
			}
		}
		r.Note = fmt.Sprintf("%d of %d rounds ok; %s", len(ok), len(g), strings.Join(failed, "; "))
		return r
	}
	p99 := make([]float64, len(ok))
	rss := make([]float64, len(ok))
	p50 := make([]float64, len(ok))
	mx := make([]float64, len(ok))
	var p99s, rsss []string
	extra := map[string]float64{}
	for i, r := range ok {
		p99[i], rss[i], p50[i], mx[i] = r.P99Ms, r.RSSPerSubKiB, r.P50Ms, r.MaxMs
		p99s = append(p99s, num(r.P99Ms))
		rsss = append(rsss, fmt.Sprintf("%.1f", r.RSSPerSubKiB))
		extra[fmt.Sprintf("round_%d_p99_ms", roundOf[i])] = r.P99Ms
		extra[fmt.Sprintf("round_%d_rss_per_sub_kib", roundOf[i])] = r.RSSPerSubKiB
	}
	mp99 := median(p99) // median (subscribed.go) sorts a copy
	// The other figures (threads, RSS, per-append extras) come from the
	// round whose p99 is nearest the median.
	best := ok[0]
	for _, r := range ok[1:] {
		if abs(r.P99Ms-mp99) < abs(best.P99Ms-mp99) {
			best = r
		}
	}
	m := best
	m.Extra = map[string]float64{}
	for k, v := range best.Extra {
		m.Extra[k] = v
	}
	for k, v := range extra {
		m.Extra[k] = v
	}
	m.Extra["rounds"] = float64(len(g))
	m.P99Ms = mp99
	m.RSSPerSubKiB = median(rss)
	m.P50Ms = median(p50)
	m.MaxMs = median(mx)
	m.Note = fmt.Sprintf("median of %d rounds: p99 %s ms; RSS/sub %s KiB", len(ok), strings.Join(p99s, ", "), strings.Join(rsss, ", "))
	if len(failed) > 0 {
		m.Note += "; " + strings.Join(failed, "; ")
	}
	return m
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// roundsAtOrBelow counts the rounds in which a's p99 was ≤ b's, pairing
// a's i-th round with b's i-th (run.sh runs them in the same round), over
// the rounds both completed. ok is false unless both ran several rounds.
func roundsAtOrBelow(a, b Record) (met, n int, ok bool) {
	na, nb := int(a.Extra["rounds"]), int(b.Extra["rounds"])
	if na < 2 || na != nb {
		return 0, 0, false
	}
	for i := 1; i <= na; i++ {
		k := fmt.Sprintf("round_%d_p99_ms", i)
		pa, okA := a.Extra[k]
		pb, okB := b.Extra[k]
		if !okA || !okB {
			continue
		}
		n++
		if pa <= pb {
			met++
		}
	}
	return met, n, n > 0
}
