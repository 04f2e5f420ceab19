package commands

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/durable-streams-server/durable-streams-server/caddymodule/webhook"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "webhook-key",
		Usage: "rotate|show --data-dir <path>",
		Short: "Rotates or shows the webhook signing keys kept in a data directory",
		Long: `
Webhook deliveries are signed with an Ed25519 key kept in
<data_dir>/webhook-keys.json (mode 0600), created on the server's first
start; its public half is published at <stream root>/__ds/jwks.json.

rotate makes a new active key. The old key's public half stays published
for 10 minutes past the rotation (and past its last signature), so every
delivery it signed can still be verified; then it is dropped. A running
server signs with the new key within a second (it watches the file):

	$ durable-streams-server webhook-key rotate --data-dir /var/lib/durable-streams

show lists the active key and the retired keys still kept.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("data-dir", "", "The server's data directory (required)")
			cmd.Args = cobra.ExactArgs(1)
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdWebhookKey)
		},
	})
}

func cmdWebhookKey(fl caddycmd.Flags) (int, error) {
	dataDir := fl.String("data-dir")
	if dataDir == "" {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--data-dir is required")
	}
	if err := webhookKey(fl.Arg(0), dataDir, time.Now(), os.Stdout); err != nil {
		return caddy.ExitCodeFailedQuit, err
	}
	return caddy.ExitCodeSuccess, nil
}

func webhookKey(action, dataDir string, now time.Time, w io.Writer) error {
	switch action {
	case "rotate":
		before, err := webhook.InspectKeys(dataDir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		ring, err := webhook.RotateKeys(dataDir, now)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "New active webhook signing key: %s\n", ring.ActiveKID())
		if before != nil {
			fmt.Fprintf(w, "Retired: %s, published in jwks.json until at least %s.\n",
				before.ActiveKID(), now.Add(webhook.RetiredKeyPublication).UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(w, "A running server signs with it within a second.")
		return nil
	case "show":
		ring, err := webhook.InspectKeys(dataDir)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("no webhook keys in %s yet: the server creates them on its first start (or run webhook-key rotate)", dataDir)
		}
		if err != nil {
			return err
		}
		for _, k := range ring.Keys() {
			if k.Active {
				fmt.Fprintf(w, "active   %s  created %s\n", k.KID, k.CreatedAt.UTC().Format(time.RFC3339))
				continue
			}
			state := "published until " + k.RetiredAt.Add(webhook.RetiredKeyPublication).UTC().Format(time.RFC3339)
			if !k.Published {
				state = "no longer published"
			}
			fmt.Fprintf(w, "retired  %s  retired %s, %s\n", k.KID, k.RetiredAt.UTC().Format(time.RFC3339), state)
		}
		return nil
	default:
		return fmt.Errorf("unknown action %q: use rotate or show", action)
	}
}
