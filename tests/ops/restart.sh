#!/usr/bin/env bash
# Restart and binary-upgrade benchmark (make ops-restart).
#
# Plays systemd's socket activation: a helper holds the listening socket and
# passes it to the server as fd 3; with STREAMS streams on disk (default
# 100,000) and a steady load (4 producers appending, 2 readers, a new
# connection per request), it restarts the server (SIGTERM, then the same
# binary) and upgrades it (SIGTERM, then another copy of the binary), and
# reports for each: refused connections, failed requests, requests resent
# because the old process closed their connection unanswered, the longest
# request and the blackout (the longest time without a completed request).
# The test is tests/e2e/handover_test.go; `make test` runs it with 1,000
# streams.
#
#   tests/ops/restart.sh [--no-build]          STREAMS=100000 by default
set -euo pipefail
cd "$(dirname "$0")/../.."

build=1
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    *) echo "usage: $0 [--no-build]" >&2; exit 2 ;;
  esac
done
streams=${STREAMS:-100000}
[ "$build" = 1 ] && make --no-print-directory build


dir=bench/results/restart-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$dir"
out=$dir/restart.log
echo "restart benchmark: $streams streams on disk; full log in $out"
DS_HANDOVER_STREAMS=$streams DS_BIN=$PWD/bin/durable-streams-server \
  nice go test ./tests/e2e -run '^TestRestartKeepsTheListeningSocket$' -count=1 -v -timeout 60m \
  >"$out" 2>&1 || { tail -40 "$out"; exit 1; }
grep -E 'handover_test.go:[0-9]+: ' "$out" | sed 's/^ *handover_test.go:[0-9]*: /  /'
