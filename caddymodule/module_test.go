package caddymodule

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Validate catches what the JSON config can say but the Caddyfile parser
// never produces.
func TestValidateRejects(t *testing.T) {
	for _, tc := range []struct {
		name     string
		h        Handler
		contains string
	}{
		{"negative retention_age", Handler{RetentionAge: caddy.Duration(-time.Hour)}, "retention_age must not be negative"},
		{"negative retention_bytes", Handler{RetentionBytes: -1}, "retention_bytes must not be negative"},
		{"tiny segment_size", Handler{SegmentSize: 4096}, "segment_size must be at least 65536 bytes"},
		{"unknown fsync", Handler{Fsync: "sometimes"}, "fsync must be always, interval or off"},
		{"negative max_inflight_body_bytes", Handler{MaxInflightBodyBytes: -1}, "max_inflight_body_bytes must not be negative"},
		{"budget below max_append_size", Handler{MaxAppendSize: 2 << 20, MaxInflightBodyBytes: 1 << 20},
			"max_inflight_body_bytes (1048576) must be at least max_append_size (2097152)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.h
			h.applyDefaults()
			err := h.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("Validate() = %v; want an error containing %q", err, tc.contains)
			}
		})
	}
	ok := Handler{RetentionAge: caddy.Duration(time.Hour), RetentionBytes: 1 << 30, SegmentSize: MinSegmentSize}
	ok.applyDefaults()
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate() of a valid retention config: %v", err)
	}
}

// The in-flight body budget defaults to 256 MiB, or max_append_size when
// that is larger, so a body of the largest size always fits.
func TestInflightBodyBudgetDefault(t *testing.T) {
	// In memory mode the machine's memory may lower it (quota.go): not here.
	defer func(r readFile) { systemFiles = r }(systemFiles)
	systemFiles = fakeFiles(nil)
	for _, tc := range []struct {
		h    Handler
		want int64
	}{
		{Handler{}, 256 << 20},
		{Handler{MaxAppendSize: 1 << 30}, 1 << 30},
		{Handler{MaxInflightBodyBytes: 128 << 20}, 128 << 20},
	} {
		h := tc.h
		h.applyDefaults()
		if err := h.Validate(); err != nil {
			t.Fatalf("Validate(%+v): %v", tc.h, err)
		}
		if h.MaxInflightBodyBytes != tc.want {
			t.Errorf("max_inflight_body_bytes for %+v = %d, want %d", tc.h, h.MaxInflightBodyBytes, tc.want)
		}
	}
}
