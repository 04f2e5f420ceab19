package main

import (
	"os"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	maybeH2FloorChild() // the test binary is also h2floor's server
	os.Exit(m.Run())
}

// The floor holds every stream open over HTTP/2 and counts what that costs
// the server: 200 streams each keep at least a handler goroutine and a
// response buffer (4 KiB) in the child, so the RSS per stream cannot be
// near zero unless the streams were not held.
func TestH2FloorHoldsStreamsOverHTTP2(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	res, err := measureH2Floor(exe, 200, 2, 300*time.Millisecond, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Streams != 200 {
		t.Fatalf("streams = %d, want 200", res.Streams)
	}
	if res.BaseRSSKiB <= 0 || res.IdleRSSKiB <= res.BaseRSSKiB {
		t.Fatalf("RSS %v -> %v KiB: the child's growth was not measured", res.BaseRSSKiB, res.IdleRSSKiB)
	}
	if res.PerStreamKB < 4 {
		t.Fatalf("%.2f KiB per stream: below one response buffer, so the streams were not held", res.PerStreamKB)
	}
	if _, err := measureH2Floor(exe, 2, 3, 0, time.Second); err == nil {
		t.Fatal("more connections than streams: want an error")
	}
}
