package commands

import (
	"fmt"
	"os"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/durable-streams-server/durable-streams-server/native"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "verify",
		Usage: "--data-dir <path>",
		Short: "Checks a data directory's stream bytes against their checksums, even while a server uses it",
		Long: `
Reads every stream's bytes in data_dir and compares them with the CRC32C
checksums stored beside the records. It works offline and against the
data_dir of a running server without stopping it (it reads one consistent
snapshot; bytes appended after it are checked next time). Each problem is
printed as one line naming the stream and the byte range; the exit status
is non-zero if there is any.

	$ durable-streams-server verify --data-dir /var/lib/durable-streams
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("data-dir", "", "The data directory to check (required)")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdVerify)
		},
	})
}

func cmdVerify(fl caddycmd.Flags) (int, error) {
	dataDir := fl.String("data-dir")
	if dataDir == "" {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--data-dir is required")
	}
	r, err := native.Verify(dataDir)
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("verify %s: %w", dataDir, err)
	}
	for _, p := range r.Problems {
		fmt.Fprintln(os.Stderr, p)
	}
	summary := fmt.Sprintf("%d streams, %d blocks, %d bytes checked", r.Streams, r.Blocks, r.Bytes)
	if len(r.Problems) > 0 {
		return caddy.ExitCodeFailedQuit, fmt.Errorf("%s: %d problems", summary, len(r.Problems))
	}
	fmt.Printf("%s: no problems\n", summary)
	return caddy.ExitCodeSuccess, nil
}
