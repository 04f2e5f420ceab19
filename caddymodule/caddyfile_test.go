package caddymodule

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
		want  Handler
	}{
		{
			name:  "no block: defaults are filled in at Provision",
			input: `durable_streams`,
			want:  Handler{},
		},
		{
			name:  "empty block",
			input: "durable_streams {\n}",
			want:  Handler{},
		},
		{
			name: "every option",
			input: `durable_streams {
				data_dir /var/lib/durable-streams
				fsync interval 250ms
				long_poll_timeout 45s
				sse_reconnect_interval 2m
				sse_takeover off
				long_poll_takeover off
				direct_reads off
				max_append_size 10MB
				max_inflight_body_bytes 1GiB
				stream_root /streams
				retention_age 7d
				retention_bytes 10GiB
				segment_size 16MiB
			}`,
			want: Handler{
				DataDir:              "/var/lib/durable-streams",
				Fsync:                "interval",
				FsyncInterval:        caddy.Duration(250 * time.Millisecond),
				LongPollTimeout:      caddy.Duration(45 * time.Second),
				SSEReconnectInterval: caddy.Duration(2 * time.Minute),
				SSETakeover:          new(false),
				LongPollTakeover:     new(false),
				DirectReads:          new(false),
				MaxAppendSize:        10_000_000,
				MaxInflightBodyBytes: 1 << 30,
				StreamRoot:           "/streams",
				RetentionAge:         caddy.Duration(7 * 24 * time.Hour),
				RetentionBytes:       10 << 30,
				SegmentSize:          16 << 20,
			},
		},
		{
			name:  "retention by age alone",
			input: "durable_streams {\n retention_age 36h\n}",
			want:  Handler{RetentionAge: caddy.Duration(36 * time.Hour)},
		},
		{
			name:  "sse_takeover on, said explicitly",
			input: "durable_streams {\n sse_takeover on\n}",
			want:  Handler{SSETakeover: new(true)},
		},
		{
			name:  "relative data_dir kept as written",
			input: "durable_streams {\n data_dir ./data\n}",
			want:  Handler{DataDir: "./data"},
		},
		{
			name:  "fsync off",
			input: "durable_streams {\n fsync off\n}",
			want:  Handler{Fsync: "off"},
		},
		{
			name:  "fsync interval with the engine's default period",
			input: "durable_streams {\n fsync interval\n}",
			want:  Handler{Fsync: "interval"},
		},
		{
			name:  "Caddy duration units (days)",
			input: "durable_streams {\n long_poll_timeout 1d\n}",
			want:  Handler{LongPollTimeout: caddy.Duration(24 * time.Hour)},
		},
		{
			name:  "binary size units",
			input: "durable_streams {\n max_append_size 64MiB\n}",
			want:  Handler{MaxAppendSize: 64 << 20},
		},
		{
			name:  "plain byte count",
			input: "durable_streams {\n max_append_size 1024\n}",
			want:  Handler{MaxAppendSize: 1024},
		},
		{
			name:  "a later option overrides an earlier one",
			input: "durable_streams {\n long_poll_timeout 10s\n long_poll_timeout 20s\n}",
			want:  Handler{LongPollTimeout: caddy.Duration(20 * time.Second)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Handler
			if err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input)); err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !sameConfig(got, tc.want) {
				t.Errorf("got %+v, want %+v", configOf(got), configOf(tc.want))
			}
		})
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		input    string
		line     int    // the line the error must name
		contains string // part of the message
	}{
		{
			name:     "unknown option",
			input:    "durable_streams {\n data_dir /x\n compression zstd\n}",
			line:     3,
			contains: "unrecognized durable_streams option 'compression'",
		},
		{
			name:     "argument on the directive itself",
			input:    "durable_streams /var/lib/x",
			line:     1,
			contains: "wrong argument count",
		},
		{
			name:     "data_dir without a path",
			input:    "durable_streams {\n data_dir\n}",
			line:     2,
			contains: "wrong argument count",
		},
		{
			name:     "data_dir with two paths",
			input:    "durable_streams {\n data_dir /a /b\n}",
			line:     2,
			contains: "wrong argument count",
		},
		{
			name:     "stream_root without a path",
			input:    "durable_streams {\n\n stream_root\n}",
			line:     3,
			contains: "wrong argument count",
		},
		{
			name:     "long_poll_timeout without a value",
			input:    "durable_streams {\n long_poll_timeout\n}",
			line:     2,
			contains: "wrong argument count",
		},
		{
			name:     "long_poll_timeout with two values",
			input:    "durable_streams {\n long_poll_timeout 1s 2s\n}",
			line:     2,
			contains: "wrong argument count",
		},
		{
			name:     "bad duration",
			input:    "durable_streams {\n long_poll_timeout soon\n}",
			line:     2,
			contains: "parsing long_poll_timeout",
		},
		{
			name:     "zero duration",
			input:    "durable_streams {\n sse_reconnect_interval 0s\n}",
			line:     2,
			contains: "sse_reconnect_interval must be positive",
		},
		{
			name:     "negative duration",
			input:    "durable_streams {\n long_poll_timeout -5s\n}",
			line:     2,
			contains: "long_poll_timeout must be positive",
		},
		{
			name:     "bad sse duration",
			input:    "durable_streams {\n data_dir /x\n sse_reconnect_interval forever\n}",
			line:     3,
			contains: "parsing sse_reconnect_interval",
		},
		{
			name:     "sse duration with two words",
			input:    "durable_streams {\n sse_reconnect_interval 10 parsecs\n}",
			line:     2,
			contains: "wrong argument count",
		},
		{
			name:     "fsync without a mode",
			input:    "durable_streams {\n fsync\n}",
			line:     2,
			contains: "wrong argument count",
		},
		{
			name:     "unknown fsync mode",
			input:    "durable_streams {\n fsync sometimes\n}",
			line:     2,
			contains: "fsync must be always, interval or off",
		},
		{
			name:     "fsync always with a duration",
			input:    "durable_streams {\n fsync always 1s\n}",
			line:     2,
			contains: "only fsync interval takes a duration",
		},
		{
			name:     "fsync interval with a bad duration",
			input:    "durable_streams {\n fsync interval often\n}",
			line:     2,
			contains: "parsing fsync interval",
		},
		{
			name:     "fsync with three arguments",
			input:    "durable_streams {\n fsync interval 1s 2s\n}",
			line:     2,
			contains: "wrong argument count",
		},
		{
			name:     "sse_takeover without a value",
			input:    "durable_streams {\n sse_takeover\n}",
			line:     2,
			contains: "wrong argument count",
		},
		{
			name:     "long_poll_takeover neither on nor off",
			input:    "durable_streams {\n long_poll_takeover maybe\n}",
			line:     2,
			contains: "long_poll_takeover must be on or off",
		},
		{
			name:     "direct_reads neither on nor off",
			input:    "durable_streams {\n direct_reads maybe\n}",
			line:     2,
			contains: "direct_reads must be on or off",
		},
		{
			name:     "sse_takeover neither on nor off",
			input:    "durable_streams {\n sse_takeover maybe\n}",
			line:     2,
			contains: "sse_takeover must be on or off",
		},
		{
			name:     "bad size",
			input:    "durable_streams {\n max_append_size lots\n}",
			line:     2,
			contains: "parsing max_append_size",
		},
		{
			name:     "zero size",
			input:    "durable_streams {\n max_append_size 0\n}",
			line:     2,
			contains: "max_append_size out of range",
		},
		{
			name:     "size without a value",
			input:    "durable_streams {\n max_append_size\n}",
			line:     2,
			contains: "wrong argument count",
		},
		{
			name:     "bad retention_age",
			input:    "durable_streams {\n retention_age a-week\n}",
			line:     2,
			contains: "parsing retention_age",
		},
		{
			name:     "zero retention_age",
			input:    "durable_streams {\n retention_age 0s\n}",
			line:     2,
			contains: "retention_age must be positive",
		},
		{
			name:     "bad retention_bytes",
			input:    "durable_streams {\n data_dir /x\n retention_bytes plenty\n}",
			line:     3,
			contains: "parsing retention_bytes",
		},
		{
			name:     "unparsable max_inflight_body_bytes",
			input:    "durable_streams {\n max_inflight_body_bytes plenty\n}",
			line:     2,
			contains: "parsing max_inflight_body_bytes",
		},
		{
			name:     "zero max_inflight_body_bytes",
			input:    "durable_streams {\n max_inflight_body_bytes 0\n}",
			line:     2,
			contains: "max_inflight_body_bytes out of range",
		},
		{
			name:     "zero segment_size",
			input:    "durable_streams {\n segment_size 0\n}",
			line:     2,
			contains: "segment_size out of range",
		},
		{
			name:     "inline_stream_size past 64KiB",
			input:    "durable_streams {\n inline_stream_size 65537\n}",
			line:     2,
			contains: "inline_stream_size must be 0 (off) or a size up to 65536 bytes",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if err == nil {
				t.Fatalf("want an error, got none (config %+v)", configOf(h))
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not contain %q", err, tc.contains)
			}
			if want := "Testfile:" + strconv.Itoa(tc.line); !strings.HasSuffix(err.Error(), want) {
				t.Errorf("error %q does not name line %d (%q)", err, tc.line, want)
			}
		})
	}
}

// config is the user-facing part of a Handler, for comparisons.
type config struct {
	DataDir              string
	Fsync                string
	FsyncInterval        caddy.Duration
	LongPollTimeout      caddy.Duration
	SSEReconnectInterval caddy.Duration
	SSETakeover          string // "" (default), "on" or "off"
	MaxAppendSize        int64
	MaxInflightBodyBytes int64
	StreamRoot           string
	RetentionAge         caddy.Duration
	RetentionBytes       int64
	SegmentSize          int64
	DirectReads          string // "" (default), "on" or "off"
}

func configOf(h Handler) config {
	takeover := ""
	if h.SSETakeover != nil {
		takeover = map[bool]string{true: "on", false: "off"}[*h.SSETakeover]
	}
	direct := ""
	if h.DirectReads != nil {
		direct = map[bool]string{true: "on", false: "off"}[*h.DirectReads]
	}
	return config{h.DataDir, h.Fsync, h.FsyncInterval, h.LongPollTimeout, h.SSEReconnectInterval, takeover,
		h.MaxAppendSize, h.MaxInflightBodyBytes, h.StreamRoot, h.RetentionAge, h.RetentionBytes, h.SegmentSize, direct}
}

func sameConfig(a, b Handler) bool { return configOf(a) == configOf(b) }

// inline_stream_size: unset is the engine's default (1 KiB), 0 or off keep
// every stream in segment files, a size is passed on.
func TestCaddyfileInlineStreamSize(t *testing.T) {
	for _, tc := range []struct {
		input string
		want  int64 // as the engine takes it: 0 default, -1 none
	}{
		{"durable_streams {\n data_dir /x\n}", 0},
		{"durable_streams {\n inline_stream_size 0\n}", -1},
		{"durable_streams {\n inline_stream_size off\n}", -1},
		{"durable_streams {\n inline_stream_size 8KiB\n}", 8192},
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input)); err != nil {
			t.Fatalf("%q: %v", tc.input, err)
		}
		if got := h.inlineStreamBytes(); got != tc.want {
			t.Errorf("%q: the engine gets %d; want %d", tc.input, got, tc.want)
		}
	}
}
