package commands

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/durable-streams-server/durable-streams-server/caddymodule/webhook"
)

func TestWebhookKeyRotateAndShow(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := webhookKey("show", dir, time.Now(), &out); err == nil || !strings.Contains(err.Error(), "no webhook keys") {
		t.Errorf("show before any key: %v", err)
	}
	first, err := webhook.OpenKeyRing(dir, nil) // the server's first start
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	if err := webhookKey("rotate", dir, now, &out); err != nil {
		t.Fatal(err)
	}
	after, err := webhook.InspectKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := "New active webhook signing key: " + after.ActiveKID() + "\n" +
		"Retired: " + first.ActiveKID() + ", published in jwks.json until at least 2026-12-05T12:10:00Z.\n" +
		"A running server signs with it within a second.\n"
	if out.String() != want || after.ActiveKID() == first.ActiveKID() {
		t.Errorf("rotate printed\n%s\nwant\n%s", out.String(), want)
	}
	fi, err := os.Stat(filepath.Join(dir, webhook.KeyFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file after rotate: %v %v", fi, err)
	}
	out.Reset()
	if err := webhookKey("show", dir, now, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 ||
		!regexp.MustCompile(`^active   `+regexp.QuoteMeta(after.ActiveKID())+`  created 2026-12-05T12:00:00Z$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^retired  `+regexp.QuoteMeta(first.ActiveKID())+`  retired 2026-12-05T12:00:00Z, `).MatchString(lines[1]) {
		t.Errorf("show printed\n%s", out.String())
	}
	if err := webhookKey("delete", dir, now, &out); err == nil {
		t.Error("unknown action accepted")
	}
}
