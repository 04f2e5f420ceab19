package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// README, Webhook security: the signing keys live in
// <data_dir>/webhook-keys.json (mode 0600); `webhook-key rotate` makes a new
// active key; `backup` copies the keys with the streams, so a server
// restored from the copy keeps its kid and the tokens it issued.
func TestWebhookKeyCommandsAndBackup(t *testing.T) {
	bin := binary(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "data")
	n := newNode(t, src, "")
	n.start()
	if r := mustSend(t, n.client, http.MethodPut, n.url("kept"), map[string]string{"Content-Type": "text/plain"}, nil); r.status != http.StatusCreated {
		t.Fatalf("PUT: %d", r.status)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("webhook-key", "rotate", "--data-dir", src)
	rotated := run("webhook-key", "rotate", "--data-dir", src)
	kid := regexp.MustCompile(`New active webhook signing key: (ds_[A-Za-z0-9_-]{43})\n`).FindStringSubmatch(rotated)
	if kid == nil || !regexp.MustCompile(`Retired: ds_[A-Za-z0-9_-]{43}, published in jwks.json until at least `).MatchString(rotated) {
		t.Fatalf("rotate printed:\n%s", rotated)
	}
	fi, err := os.Stat(filepath.Join(src, "webhook-keys.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}

	dest := filepath.Join(tmp, "backup")
	run("backup", "--data-dir", src, backupDestFlag(t, bin), dest)
	shown := run("webhook-key", "show", "--data-dir", dest)
	if !regexp.MustCompile(`(?m)^active   ` + regexp.QuoteMeta(kid[1]) + `  created `).MatchString(shown) {
		t.Errorf("the backup's active key is not %s:\n%s", kid[1], shown)
	}
	fi, err = os.Stat(filepath.Join(dest, "webhook-keys.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup's key file: %v, %v", fi, err)
	}
	n.terminate()
}
