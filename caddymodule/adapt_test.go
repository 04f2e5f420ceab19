package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	// The adapt goldens use standard directives (respond, header, encode, ...).
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

var update = flag.Bool("update", false, "rewrite the golden adapt files with the current output")

// goldenSeparator splits a .caddyfiletest into its Caddyfile and the JSON it
// must adapt to (the layout of Caddy's own caddyfile_adapt tests).
const goldenSeparator = "\n----------\n"

// TestAdaptGolden adapts every testdata/adapt/*.caddyfiletest and compares
// the JSON with the golden half of the file. Run with -update to rewrite.
func TestAdaptGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "adapt", "*.caddyfiletest"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files (%v)", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".caddyfiletest"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, want, _ := strings.Cut(string(raw), goldenSeparator)

			got := adapt(t, input+"\n")
			if *update {
				out := strings.TrimRight(input, "\n") + "\n" + goldenSeparator[1:] + got + "\n"
				if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if strings.TrimSpace(want) != got {
				t.Errorf("adapted JSON differs from the golden file (run go test -update to accept)\n got: %s\nwant: %s", got, strings.TrimSpace(want))
			}
		})
	}
}

func adapt(t *testing.T, input string) string {
	t.Helper()
	adapter := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}
	out, warnings, err := adapter.Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("adapt warning: %s", w.String())
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "\t"); err != nil {
		t.Fatalf("indent: %v", err)
	}
	return buf.String()
}

// The golden files pin the JSON; these check the few facts that matter most,
// so a careless -update cannot bless a broken config.
func TestAdaptPlacesHandler(t *testing.T) {
	for _, tc := range []struct {
		name, input, want string
	}{
		{
			name:  "site level with options",
			input: ":4437 {\n durable_streams /v1/stream/* {\n long_poll_timeout 30s\n max_append_size 1KB\n }\n}",
			want:  `{"handler":"durable_streams","long_poll_timeout":30000000000,"max_append_size":1000}`,
		},
		{
			name:  "inside route",
			input: ":4437 {\n route /v1/stream/* {\n durable_streams {\n data_dir ./data\n }\n }\n}",
			want:  `{"data_dir":"./data","handler":"durable_streams"}`,
		},
		{
			name:  "inside handle",
			input: ":4437 {\n handle /v1/stream/* {\n durable_streams {\n stream_root /v1/stream\n }\n }\n}",
			want:  `{"handler":"durable_streams","stream_root":"/v1/stream"}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			adapter := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}
			out, _, err := adapter.Adapt([]byte(tc.input), map[string]any{"filename": "Caddyfile"})
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			if !bytes.Contains(out, []byte(tc.want)) {
				t.Errorf("adapted JSON lacks %s:\n%s", tc.want, out)
			}
		})
	}
}

func TestAdaptReportsLine(t *testing.T) {
	input := ":4437 {\n\troute /v1/stream/* {\n\t\tdurable_streams {\n\t\t\tlong_poll_timeout soon\n\t\t}\n\t}\n}\n"
	adapter := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}
	_, _, err := adapter.Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
	if err == nil || !strings.Contains(err.Error(), "Caddyfile:4") {
		t.Fatalf("want an error naming Caddyfile:4, got %v", err)
	}
}
