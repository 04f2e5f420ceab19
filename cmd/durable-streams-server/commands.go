package main

// The dev, backup and health subcommands live in a package the module root
// imports too, so xcaddy builds have them as well.
import _ "github.com/durable-streams-server/durable-streams-server/caddymodule/commands"
