// Command durable-streams-server is Caddy with its standard modules plus the
// durable_streams HTTP handler: `run`, `adapt`, `validate`, `reload`, `fmt`
// and the rest of Caddy's commands work as usual, `dev` starts a zero-config
// in-memory server, and `version` names this product's version too.
package main

import (
	"fmt"
	"os"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/durable-streams-server/durable-streams-server/caddymodule"
	"github.com/durable-streams-server/durable-streams-server/native"
)

const binaryName = "durable-streams-server"

func main() {
	caddy.CustomBinaryName = binaryName
	caddy.CustomLongDescription = longDescription
	if setGCDefault(os.LookupEnv) {
		newGCTuner(nil).arm()
	}

	// Caddy's own `version` prints only Caddy's module version, so answer
	// it here; every other command is Caddy's.
	if len(os.Args) == 2 {
		switch os.Args[1] {
		case "version", "--version", "-v":
			fmt.Println(versionLine())
			return
		}
	}
	caddycmd.Main()
}

// versionLine is e.g. "durable-streams-server v0.1.0 (Caddy v2.11.9, engine 0.1.0)".
func versionLine() string {
	caddyVersion, _ := caddy.Version()
	return fmt.Sprintf("%s %s (Caddy %s, engine %s)", binaryName, caddymodule.Version, caddyVersion, native.Version())
}

const longDescription = `durable-streams-server serves the Durable Streams protocol: durable,
append-only byte streams over HTTP, read by offset, tailed by long-poll or
SSE. It is Caddy with the durable_streams handler built in.

Quick start, in memory, no configuration:

	$ durable-streams-server dev

Production, with a Caddyfile:

	$ durable-streams-server run --config Caddyfile

Every Caddy command works as usual (run, adapt, validate, reload, fmt,
list-modules, ...). See 'durable-streams-server help <command>'.
`
