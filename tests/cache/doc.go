// Package cache tests read fan-out through a real shared cache: Varnish
// running packaging/varnish/durable-streams.vcl in front of the
// durable-streams-server binary (PROTOCOL.md §10). The tests skip unless
// DS_CACHE_TEST=1 and DS_BIN names the binary, and skip (saying so) if
// varnishd is missing:
//
//	make build && make test-cache
package cache
