// Package durablestreams is the module root that xcaddy builds with:
//
//	CGO_ENABLED=1 xcaddy build --with github.com/durable-streams-server/durable-streams-server
//
// Importing it registers the durable_streams HTTP handler (and its Caddyfile
// directive) and the dev, backup and health subcommands.
package durablestreams

import (
	_ "github.com/durable-streams-server/durable-streams-server/caddymodule"
	_ "github.com/durable-streams-server/durable-streams-server/caddymodule/commands"
)
