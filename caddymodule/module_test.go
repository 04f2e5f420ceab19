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
