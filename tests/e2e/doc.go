// Package e2e holds end-to-end tests that drive the real durable-streams-server
// binary over loopback HTTP. They skip unless DS_BIN names the binary:
//
//	go build -o bin/durable-streams-server ./cmd/durable-streams-server
//	DS_BIN=$PWD/bin/durable-streams-server go test ./tests/e2e/
package e2e
