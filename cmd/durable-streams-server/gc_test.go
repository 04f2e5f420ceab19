package main

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestSetGCDefault(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })

	unset := func(string) (string, bool) { return "", false }
	if !setGCDefault(unset) {
		t.Fatal("GOGC unset: the default was not applied")
	}
	if got := debug.SetGCPercent(100); got != maxGCPercent {
		t.Errorf("GOGC unset: GC percent %d, want %d", got, maxGCPercent)
	}

	// The user's GOGC (already applied by the runtime) is left alone.
	debug.SetGCPercent(50)
	set := func(k string) (string, bool) { return "50", k == "GOGC" }
	if setGCDefault(set) {
		t.Error("GOGC set: the default overrode it")
	}
	if got := debug.SetGCPercent(100); got != 50 {
		t.Errorf("GOGC set: GC percent %d, want the user's 50", got)
	}
}

func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 400},
		{1 << 20, 400},
		{8 << 20, 400}, // 32 MiB of headroom is exactly 400%
		{8<<20 + 1, 399},
		{16 << 20, 200},
		{32 << 20, 100},
		{130 << 20, 100}, // never below Go's default
		{8 << 30, 100},
	} {
		if got := gcPercentFor(c.live); got != c.want {
			t.Errorf("gcPercentFor(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}

// The tuner follows the live heap: a large live heap lowers the target to
// Go's default after the next collection, and freeing it restores 400.
func TestGCTunerFollowsLiveHeap(t *testing.T) {
	before := debug.SetGCPercent(maxGCPercent)
	seen := make(chan int, 64)
	tuner := newGCTuner(func(p int) {
		select {
		case seen <- p:
		default:
		}
	})
	tuner.arm()
	t.Cleanup(func() {
		tuner.stop()
		debug.SetGCPercent(before)
	})

	// awaitPercent collects until the tuner reports want (each report
	// follows a collection; a report may lag one collection behind).
	awaitPercent := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			runtime.GC()
			select {
			case p := <-seen:
				if p == want {
					return
				}
			case <-time.After(100 * time.Millisecond):
			}
		}
		t.Fatalf("the tuner never reported %d%%", want)
	}

	live := make([]*[1 << 20]byte, 160) // 160 MiB live, well past 32 MiB
	for i := range live {
		live[i] = new([1 << 20]byte)
	}
	awaitPercent(minGCPercent)
	if got := debug.SetGCPercent(minGCPercent); got != minGCPercent {
		t.Errorf("with 160 MiB live the target is %d%%, want %d%%", got, minGCPercent)
	}
	runtime.KeepAlive(live)

	live = nil
	awaitPercent(maxGCPercent)
	if got := debug.SetGCPercent(maxGCPercent); got != maxGCPercent {
		t.Errorf("after freeing it the target is %d%%, want %d%%", got, maxGCPercent)
	}
}
