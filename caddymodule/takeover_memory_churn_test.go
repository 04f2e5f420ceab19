package caddymodule

import (
	"testing"
	"time"
)

// A long-poll fan-out takes connections over in bursts, one per append, often
// more than freeSettle apart. Returning memory between two bursts costs a
// forced collection and the page faults of the next burst, so once the engine
// answers long-polls the free waits for freeAfterAnswers without answers.
func TestTakeoverGarbageIsNotFreedWhileLongPollsAreAnswered(t *testing.T) {
	var clock int64 = int64(time.Hour)
	var frees int
	var scheduled []func()
	oldSince, oldFree, oldAfter := sinceStart, freeOSMemory, afterSettle
	sinceStart = func() int64 { return clock }
	freeOSMemory = func() { frees++ }
	afterSettle = func(f func()) { scheduled = append(scheduled, f) }
	m := &takeoverMemory
	m.mu.Lock()
	oldFreed := m.freedAt
	m.mu.Unlock()
	oldAnswered := m.answeredAt.Load()
	t.Cleanup(func() {
		sinceStart, freeOSMemory, afterSettle = oldSince, oldFree, oldAfter
		m.mu.Lock()
		m.freedAt = oldFreed
		m.mu.Unlock()
		m.answeredAt.Store(oldAnswered)
		m.pending.Store(false)
	})
	m.mu.Lock()
	m.freedAt = m.count.Load()
	m.mu.Unlock()
	m.answeredAt.Store(0)
	m.pending.Store(false)

	// settle lets freeSettle pass and fires the checks then due, as their
	// timers would.
	settle := func() {
		clock += int64(freeSettle)
		due := scheduled
		scheduled = nil
		for _, f := range due {
			f()
		}
	}
	burst := func() {
		for range freeMinTakeovers {
			noteTakeover()
		}
	}

	// Subscribers arriving, nothing answered yet: freed after one settle.
	burst()
	settle() // saw takeovers since it was scheduled: looks again
	settle()
	if frees != 1 {
		t.Fatalf("after a burst of takeovers with no answers and a settle: %d frees, want 1", frees)
	}

	// The fan-out: answers, then the next burst of re-polls, then a quiet
	// settle between appends. No free while answers are recent.
	for range 5 {
		noteAnswered()
		burst()
		settle()
		settle() // no takeovers since the last look, but answers are recent
		if frees != 1 {
			t.Fatalf("between two fan-out bursts: %d frees, want still 1", frees)
		}
		if len(scheduled) != 1 {
			t.Fatalf("the check must stay scheduled while answers are recent: %d scheduled", len(scheduled))
		}
	}

	// The fan-out is over: once freeAfterAnswers passes without answers, freed.
	for clock-m.answeredAt.Load() < int64(freeAfterAnswers) {
		settle()
	}
	if frees != 2 {
		t.Fatalf("%v after the last answer: %d frees, want 2", freeAfterAnswers, frees)
	}
	if len(scheduled) != 0 {
		t.Fatalf("nothing left to check after the free: %d scheduled", len(scheduled))
	}
}
