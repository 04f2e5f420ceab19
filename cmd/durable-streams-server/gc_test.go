package main

import (
	"runtime/debug"
	"testing"
)

func TestSetGCDefault(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })

	unset := func(string) (string, bool) { return "", false }
	if !setGCDefault(unset) {
		t.Fatal("GOGC unset: the default was not applied")
	}
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Errorf("GOGC unset: GC percent %d, want %d", got, defaultGCPercent)
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
