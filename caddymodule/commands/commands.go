// Package commands registers this product's Caddy subcommands — dev, backup
// and health — with Caddy's command line. It is imported by our own binary
// and by the module root, so a custom build made with xcaddy
// (`xcaddy build --with github.com/durable-streams-server/durable-streams-server`)
// has the same subcommands as durable-streams-server.
package commands

// binaryName is how the banner names the server, whatever the binary is called.
const binaryName = "durable-streams-server"
