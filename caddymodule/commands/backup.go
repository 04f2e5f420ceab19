package commands

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/durable-streams-server/durable-streams-server/caddymodule/webhook"
	"github.com/durable-streams-server/durable-streams-server/native"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "backup",
		Usage: "--data-dir <path> --to <path>",
		Short: "Copies a data directory consistently, even while a server uses it",
		Long: `
Copies data_dir to dest (which must not exist or be empty) without stopping
the server: a server started on dest serves every stream acknowledged
before the backup began. Streams deleted while the copy runs are left out,
as if deleted before it.

	$ durable-streams-server backup --data-dir /var/lib/durable-streams \
	    --to /backups/durable-streams-$(date +%Y%m%d-%H%M%S)
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("data-dir", "", "The data directory to copy (required)")
			cmd.Flags().String("to", "", "Where to write the copy; must not exist or be empty (required)")
			cmd.Flags().String("dest", "", "Same as --to")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdBackup)
		},
	})
}

func cmdBackup(fl caddycmd.Flags) (int, error) {
	dataDir, dest := fl.String("data-dir"), fl.String("to")
	if dest == "" {
		dest = fl.String("dest")
	}
	if dataDir == "" || dest == "" {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--data-dir and --to are required")
	}
	if err := native.Backup(dataDir, dest); err != nil {
		return caddy.ExitCodeFailedQuit, err
	}
	// The webhook signing keys and token secret, so the restored server keeps its kid.
	if err := webhook.CopyKeys(dataDir, dest); err != nil {
		return caddy.ExitCodeFailedQuit, fmt.Errorf("backup: webhook keys: %w", err)
	}
	fmt.Printf("Backup created: %s\n", dest)
	return caddy.ExitCodeSuccess, nil
}
