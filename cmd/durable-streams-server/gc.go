package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// The collector's target when GOGC is not set.
//
// Stream data lives in the engine's memory, outside the Go heap, which
// holds request buffers and connection state. While that heap is small,
// letting it grow to 5× its live size before collecting (GOGC=400) costs a
// few MB and saves 7–25% of the CPU per request (three A/B runs of append
// and small read; about 6 MB is live under those loads). But 5× is a
// multiplier: 5,000 parked long-polls keep about 130 MB live, and at 400 the
// heap grew to 650 MB before a collection. And the room is filled by
// garbage and then kept as RSS: 5,000 SSE connections taken over in half a
// second leave about 14 KiB of net/http buffers each. So the target is a
// budget of extra heap, not a ratio: after each collection the percent is set
// so that the heap may grow by at most gcHeadroom past what is live, between
// Go's default (100) and maxGCPercent. Caddy's soft memory limit
// (GOMEMLIMIT, else from the cgroup or the machine) still bounds the heap on
// top of this.
const (
	maxGCPercent = 400
	minGCPercent = 100 // Go's own default
	gcHeadroom   = 32 << 20
)

// gcPercentFor is the target for a live heap of `live` bytes: the percent
// that allows gcHeadroom of growth, clamped to [minGCPercent, maxGCPercent].
func gcPercentFor(live uint64) int {
	if live <= gcHeadroom*100/maxGCPercent { // also keeps live == 0 out of the division
		return maxGCPercent
	}
	return int(max(min(uint64(gcHeadroom)*100/live, maxGCPercent), minGCPercent))
}

// setGCDefault applies maxGCPercent unless the user chose with GOGC
// (GOGC=100 is Go's own default), and tells whether it did; then the caller
// starts a gcTuner.
func setGCDefault(lookupEnv func(string) (string, bool)) bool {
	if _, set := lookupEnv("GOGC"); set {
		return false
	}
	debug.SetGCPercent(maxGCPercent)
	return true
}

// gcTuner re-targets the collector after every collection.
type gcTuner struct {
	sample  []metrics.Sample
	percent int
	after   func(percent int) // tests: called after each re-target
	stopped atomic.Bool
}

// gcSentinel is garbage from birth: its finalizer runs once the collection
// that found it unreachable is done, and arms the next one. (It holds a
// pointer so that it is never a tiny allocation, whose finalizer may wait
// for the other objects sharing its block.)
type gcSentinel struct{ t *gcTuner }

// newGCTuner returns a tuner that assumes the target is maxGCPercent; arm
// starts it. One per process: two would fight over the target.
func newGCTuner(after func(percent int)) *gcTuner {
	return &gcTuner{
		sample:  []metrics.Sample{{Name: "/gc/heap/live:bytes"}},
		percent: maxGCPercent,
		after:   after,
	}
}

// arm has the tuner run after the next collection (and so on, until stop).
func (t *gcTuner) arm() {
	if t.stopped.Load() {
		return
	}
	runtime.SetFinalizer(&gcSentinel{t: t}, func(s *gcSentinel) {
		s.t.retarget()
		s.t.arm()
	})
}

// stop ends the tuner after at most one more collection.
func (t *gcTuner) stop() { t.stopped.Store(true) }

func (t *gcTuner) retarget() {
	if t.stopped.Load() {
		return
	}
	metrics.Read(t.sample)
	if t.sample[0].Value.Kind() != metrics.KindUint64 {
		return // not reported by this runtime: keep the target as it is
	}
	if p := gcPercentFor(t.sample[0].Value.Uint64()); p != t.percent {
		t.percent = p
		debug.SetGCPercent(p)
	}
	if t.after != nil {
		t.after(t.percent)
	}
}
