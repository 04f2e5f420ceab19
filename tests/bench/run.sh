#!/usr/bin/env bash
# `make bench`: durable-streams-server measured against the ceiling (Caddy's
# own `respond` handler and `file_server`, in the same binary) and against the
# reference servers (the Node.js `@durable-streams/server`, pinned in
# tests/bench/package-lock.json, the Go Caddy plugin built from the Go
# module proxy, and the Rust server of the `durable-streams` crate built by
# cargo at a pinned version), all on loopback, one scenario against one
# freshly started server at a time.
#
#   tests/bench/run.sh [--quick] [--smoke] [--duration D] [--scenario NAME[,NAME]]
#                      [--servers LIST] [--rounds N] [--no-build] [--bin PATH] [--out DIR]
#
#   --quick       short run (about 3 minutes): 2s per load test, fewer streams
#   --smoke       every scenario at tiny size against ours-mem only (< 60 s);
#                 exits non-zero if a scenario fails. Part of `make test`.
#   --duration D  load time per scenario and server (default 8s; quick 2s)
#   --scenario    scenarios to run (default all):
#                   append-1 append-64 append-producer read-small read-large
#                   fanout-sse fanout-longpoll fanout-sse-h2 fanout-longpoll-h2
#                   many-streams bodies append-subscribed
#                 (*-h2: the fan-out over TLS + HTTP/2, subscribers multiplexed
#                 100 to a connection as browsers do; Caddy-based servers only)
#   --servers     servers to run (default all):
#                   ceiling ours-mem ours-disk node-mem node-disk goplugin-mem goplugin-disk
#                   rust-mem rust-wal
#   --rounds N    rounds of fanout-sse and fanout-longpoll for ours-* and rust-*
#                 (default 3; quick and smoke 1): round by round every such
#                 server runs once, in reverse order on even rounds, and the
#                 table shows each one's median p99 and RSS per subscriber,
#                 with every round's values in the note (one round's p99
#                 moves by several times on a shared machine)
#   --no-build    use bin/durable-streams-server as it is
#   --bin PATH    use this server binary (implies --no-build)
#   --out DIR     results folder (default bench/results/<UTC timestamp>)
#
# FANOUT_DIAG_ARGS (environment): extra dsbench fanout flags for diagnostics,
# e.g. FANOUT_DIAG_ARGS="-parked-metric /metrics" (ours only: parked
# long-polls just before and after each append, in results.jsonl extra).
#
# Prints one table; writes results.md, results.jsonl, results.png and the
# servers' logs under the results folder. A server that does not start, or
# answers a probe with an error (e.g. a storage mode not implemented yet), is
# marked "unavailable" and the run goes on.
#
# The Rust server (`durable-streams-server` of the crate `durable-streams`,
# RUST_DS_VERSION) is taken from RUST_DS_BIN, else from a cargo install root
# that records that version (PATH, $CARGO_HOME, bench/.cache/rust-<version>),
# else built once by `cargo install` into bench/.cache/rust-<version>; without
# cargo or the crates registry it is "unavailable" and the run goes on.
#
# Environment: GO_PLUGIN_VERSION (default below), GO_PLUGIN_SRC=DIR builds the
# Go plugin from a checkout of its packages/caddy-plugin instead of the module
# proxy, GO_PLUGIN_BIN=PATH uses one built before, RUST_DS_VERSION and
# RUST_DS_BIN pick the Rust server, BENCH_KEEP_WORK=1 keeps the scratch
# directory (data dirs, configs), BODIES_BUDGET (e.g. 4GiB) sets
# max_inflight_body_bytes for the bodies scenario (default: the server's).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH="$ROOT/tests/bench"
cd "$ROOT"

GO_PLUGIN_MODULE="github.com/durable-streams/durable-streams/packages/caddy-plugin"
GO_PLUGIN_VERSION="${GO_PLUGIN_VERSION:-v0.1.0}"
RUST_DS_CRATE="durable-streams"
RUST_DS_VERSION="${RUST_DS_VERSION:-0.1.5}"
ALL_SCENARIOS="append-1 append-64 append-producer read-small read-large fanout-sse fanout-longpoll fanout-sse-h2 fanout-longpoll-h2 many-streams bodies append-subscribed"
ALL_SERVERS="ceiling ours-mem ours-disk node-mem node-disk goplugin-mem goplugin-disk rust-mem rust-wal"

CURRENT_SCENARIO="" MODE=full DURATION="" SCENARIOS="" SERVERS="" ROUNDS="" BUILD=1 BIN="$ROOT/bin/durable-streams-server" OUT=""
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) MODE=quick ;;
    --smoke) MODE=smoke ;;
    --duration) DURATION="$2"; shift ;;
    --duration=*) DURATION="${1#*=}" ;;
    --scenario) SCENARIOS="$SCENARIOS ${2//,/ }"; shift ;;
    --scenario=*) v="${1#*=}"; SCENARIOS="$SCENARIOS ${v//,/ }" ;;
    --servers) SERVERS="${2//,/ }"; shift ;;
    --servers=*) v="${1#*=}"; SERVERS="${v//,/ }" ;;
    --rounds) ROUNDS="$2"; shift ;;
    --rounds=*) ROUNDS="${1#*=}" ;;
    --no-build) BUILD=0 ;;
    --bin) BIN="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; BUILD=0; shift ;;
    --out) OUT="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# Sizes per mode. Every load loop is bounded by time (DURATION, timeouts) and
# by count (subscribers, streams, bytes).
case "$MODE" in
  full)  : "${DURATION:=8s}";  : "${ROUNDS:=3}"; FANOUT_SUBS=5000; FANOUT_APPENDS=10; FANOUT_BUDGET=45s; LARGE_MIB=64; MANY=100000; CREATE_TIMEOUT=60s; BODIES_MB=100
         SUB_STREAMS=10000; SUB_SUBS=1000; SUB_ROUNDS=3 ;;
  quick) : "${DURATION:=2s}";  FANOUT_SUBS=1000; FANOUT_APPENDS=5;  FANOUT_BUDGET=10s; LARGE_MIB=16; MANY=5000;   CREATE_TIMEOUT=10s; BODIES_MB=20
         SUB_STREAMS=2000; SUB_SUBS=200; SUB_ROUNDS=1 ;;
  smoke) : "${DURATION:=1s}";  FANOUT_SUBS=50;   FANOUT_APPENDS=3;  FANOUT_BUDGET=10s; LARGE_MIB=3;  MANY=300;    CREATE_TIMEOUT=20s; BODIES_MB=1
         SUB_STREAMS=300; SUB_SUBS=20; SUB_ROUNDS=1
         : "${SERVERS:=ours-mem}" ;;
esac
SCENARIOS="$(echo ${SCENARIOS:-$ALL_SCENARIOS})"
SERVERS="$(echo ${SERVERS:-$ALL_SERVERS})"
for s in $SCENARIOS; do
  case " $ALL_SCENARIOS " in *" $s "*) ;; *) echo "run.sh: unknown scenario $s" >&2; exit 2 ;; esac
done
for s in $SERVERS; do
  case " $ALL_SERVERS " in *" $s "*) ;; *) echo "run.sh: unknown server $s" >&2; exit 2 ;; esac
done
DUR_S="${DURATION%s}"
case "$DUR_S" in ''|*[!0-9]*) echo "run.sh: --duration takes whole seconds, e.g. 10s" >&2; exit 2 ;; esac
[ "$DUR_S" -ge 1 ] && [ "$DUR_S" -le 600 ] || { echo "run.sh: --duration must be 1s..600s" >&2; exit 2; }
: "${ROUNDS:=1}"
case "$ROUNDS" in ''|*[!0-9]*|0) echo "run.sh: --rounds takes a whole number from 1" >&2; exit 2 ;; esac

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT_TEMP=0
if [ -z "$OUT" ]; then
  if [ "$MODE" = smoke ]; then OUT="$(mktemp -d /tmp/dsbench-smoke.XXXXXX)"; OUT_TEMP=1; else OUT="$ROOT/bench/results/$STAMP"; fi
fi
mkdir -p "$OUT/logs"
OUT="$(cd "$OUT" && pwd)"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
WORK="$(mktemp -d /tmp/dsbench-work.XXXXXX)"
T0=$(date +%s)
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
DATE_START="$(date -u '+%Y-%m-%d %H:%M UTC')"
COMMIT_START="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"

log() { printf '[bench %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }

# --- cleanup: every server we start is recorded and killed ----------------
SERVER_PID=""
cleanup() {
  local rc=$?
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    sleep 0.5
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  if [ "${BENCH_KEEP_WORK:-0}" = 1 ]; then log "scratch kept in $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Subscribers and servers need many descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# --- tools ------------------------------------------------------------------
apt_install() {
  local SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  log "installing $*"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >"$OUT/logs/apt.log" 2>&1 ||
    { $SUDO apt-get update -q >>"$OUT/logs/apt.log" 2>&1 &&
      $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >>"$OUT/logs/apt.log" 2>&1; } ||
    { log "could not install $* (see $OUT/logs/apt.log)"; return 1; }
}
command -v go >/dev/null || { echo "run.sh: go is required" >&2; exit 1; }
command -v wrk >/dev/null || apt_install wrk || { echo "run.sh: wrk is required" >&2; exit 1; }
if [ "$MODE" != smoke ] && ! command -v gnuplot >/dev/null; then
  apt_install gnuplot-nox || log "no gnuplot: the chart will be skipped"
fi

# --- build -------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
  log "building bin/durable-streams-server (release)"
  go build -trimpath -o "$BIN" ./cmd/durable-streams-server
fi
[ -x "$BIN" ] || { echo "run.sh: no server binary at $BIN" >&2; exit 1; }
DSBENCH="$WORK/dsbench"
go build -o "$DSBENCH" ./tests/bench/dsbench

want_server() { case " $SERVERS " in *" $1 "*) return 0 ;; esac; return 1; }

# TLS scenarios: a self-signed certificate for 127.0.0.1 that every dsbench
# client trusts.
TLS_CERT="$WORK/tls/cert.pem" TLS_KEY="$WORK/tls/key.pem"
case " $SCENARIOS " in
  *-h2\ *)
    mkdir -p "$WORK/tls"
    "$DSBENCH" gencert -cert "$TLS_CERT" -key "$TLS_KEY"
    export DSBENCH_CA_FILE="$TLS_CERT" ;;
esac
declare -A UNAVAILABLE=()

# Node.js reference server.
NODE_PKG_VERSION=""
if want_server node-mem || want_server node-disk; then
  reason=""
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    reason="node/npm not installed"
  elif [ ! -f "$BENCH/node_modules/@durable-streams/server/package.json" ] ||
       ! cmp -s "$BENCH/package-lock.json" "$BENCH/node_modules/.package-lock.json.bench" 2>/dev/null; then
    log "npm ci (tests/bench: @durable-streams/server)"
    if (cd "$BENCH" && npm ci --no-audit --no-fund >"$OUT/logs/npm.log" 2>&1); then
      cp "$BENCH/package-lock.json" "$BENCH/node_modules/.package-lock.json.bench"
    else
      reason="npm ci failed: $(tail -3 "$OUT/logs/npm.log" | tr '\n' ' ')"
    fi
  fi
  if [ -z "$reason" ]; then
    NODE_PKG_VERSION="$(node -p 'require(process.argv[1]).version' "$BENCH/node_modules/@durable-streams/server/package.json")"
  else
    log "node servers unavailable: $reason"
    UNAVAILABLE[node-mem]="$reason"; UNAVAILABLE[node-disk]="$reason"
  fi
fi

# Go Caddy plugin: a throwaway binary built from the Go module proxy.
GOPLUGIN_BIN="$WORK/goplugin/caddy-goplugin"
GOPLUGIN_STATUS="not selected"
build_goplugin() {
  local dir="$WORK/goplugin" glog="$OUT/logs/goplugin-build.log"
  mkdir -p "$dir"
  cat >"$dir/main.go" <<'EOF'
// Throwaway Caddy build with the Go Durable Streams plugin, for benchmarks.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/durable-streams/durable-streams/packages/caddy-plugin"
)

func main() { caddycmd.Main() }
EOF
  (
    cd "$dir"
    export GOFLAGS=-mod=mod GOWORK=off
    go mod init bench.invalid/goplugin >/dev/null 2>&1
    if [ -n "${GO_PLUGIN_SRC:-}" ]; then
      # A local checkout of packages/caddy-plugin (when the proxy does not
      # serve the module): its own go.mod pins its dependencies.
      go mod edit -require "$GO_PLUGIN_MODULE@v0.0.0" -replace "$GO_PLUGIN_MODULE=$GO_PLUGIN_SRC" &&
        timeout 300 go mod tidy &&
        timeout 900 go build -o "$GOPLUGIN_BIN" .
    else
      timeout 300 go get "$GO_PLUGIN_MODULE@$GO_PLUGIN_VERSION" &&
        timeout 900 go build -o "$GOPLUGIN_BIN" .
    fi
  ) >"$glog" 2>&1
}
if [ -n "${GO_PLUGIN_BIN:-}" ] && { want_server goplugin-mem || want_server goplugin-disk; }; then
  # A Go plugin binary built before (e.g. kept from BENCH_KEEP_WORK=1).
  GOPLUGIN_BIN="$GO_PLUGIN_BIN"
  GOPLUGIN_STATUS="prebuilt binary $GO_PLUGIN_BIN"
  if [ ! -x "$GOPLUGIN_BIN" ]; then
    reason="GO_PLUGIN_BIN=$GO_PLUGIN_BIN is not executable"
    GOPLUGIN_STATUS="unavailable: $reason"
    UNAVAILABLE[goplugin-mem]="$reason"; UNAVAILABLE[goplugin-disk]="$reason"
  fi
elif want_server goplugin-mem || want_server goplugin-disk; then
  GOPLUGIN_FROM="$GO_PLUGIN_VERSION, built from $(go env GOPROXY)"
  [ -n "${GO_PLUGIN_SRC:-}" ] && GOPLUGIN_FROM="built from the checkout $GO_PLUGIN_SRC"
  log "building the Go plugin ($GO_PLUGIN_MODULE: $GOPLUGIN_FROM)"
  if build_goplugin; then
    GOPLUGIN_STATUS="$GOPLUGIN_FROM"
  else
    reason="Go module proxy ($(go env GOPROXY)) did not serve $GO_PLUGIN_MODULE@$GO_PLUGIN_VERSION: $(grep -v '^go: downloading' "$OUT/logs/goplugin-build.log" | tail -2 | tr '\n' ' ')"
    GOPLUGIN_STATUS="unavailable: $reason"
    echo "NOTE: Go plugin unavailable: $reason" >&2
    UNAVAILABLE[goplugin-mem]="$reason"; UNAVAILABLE[goplugin-disk]="$reason"
  fi
fi

# Rust server: durable-streams-server of the crate durable-streams at
# RUST_DS_VERSION. Our own binary has the same name, so a candidate counts
# only if the cargo install root it sits in (<root>/bin/<binary>) records
# that crate and version in .crates2.json.
RUST_CACHE="$ROOT/bench/.cache/rust-$RUST_DS_VERSION"
RUST_BIN=""
RUST_STATUS="not selected"
rust_root_has_version() {
  grep -q "\"$RUST_DS_CRATE $RUST_DS_VERSION (" "$1/.crates2.json" 2>/dev/null
}
find_rust() {
  local cand root
  if [ -n "${RUST_DS_BIN:-}" ]; then
    [ -x "$RUST_DS_BIN" ] && { RUST_BIN="$RUST_DS_BIN"; return 0; }
    return 1
  fi
  for cand in $(type -ap durable-streams-server 2>/dev/null) \
              "${CARGO_HOME:-$HOME/.cargo}/bin/durable-streams-server" \
              "$RUST_CACHE/bin/durable-streams-server"; do
    [ -x "$cand" ] || continue
    root="$(cd "$(dirname "$cand")/.." && pwd)"
    if rust_root_has_version "$root"; then RUST_BIN="$cand"; return 0; fi
  done
  return 1
}
if want_server rust-mem || want_server rust-wal; then
  reason=""
  if ! find_rust; then
    if [ -n "${RUST_DS_BIN:-}" ]; then
      reason="RUST_DS_BIN=$RUST_DS_BIN is not executable"
    elif ! command -v cargo >/dev/null; then
      reason="cargo not installed (and no $RUST_DS_CRATE $RUST_DS_VERSION install found)"
    else
      log "building $RUST_DS_CRATE $RUST_DS_VERSION with cargo install (once, into $RUST_CACHE)"
      mkdir -p "$RUST_CACHE"
      if nice timeout 1800 cargo install --quiet --locked "$RUST_DS_CRATE" --version "=$RUST_DS_VERSION" \
           --root "$RUST_CACHE" >"$OUT/logs/rust-build.log" 2>&1 && find_rust; then
        :
      else
        reason="cargo install $RUST_DS_CRATE@$RUST_DS_VERSION failed: $(grep -v '^\s*$' "$OUT/logs/rust-build.log" | tail -2 | tr '\n' ' ' | cut -c1-200)"
      fi
    fi
  fi
  if [ -z "$reason" ]; then
    RUST_STATUS="$RUST_DS_CRATE $RUST_DS_VERSION ($RUST_BIN)"
  else
    RUST_STATUS="unavailable: $reason"
    log "rust servers unavailable: $reason"
    UNAVAILABLE[rust-mem]="$reason"; UNAVAILABLE[rust-wal]="$reason"
  fi
fi

# Ceiling files: a body as large as the small stream, a file as large as the
# large stream.
SMALL_BYTES=1000
LARGE_BYTES=$(( LARGE_MIB * 1024 * 1024 ))
mkdir -p "$WORK/files/file"
head -c "$LARGE_BYTES" /dev/urandom >"$WORK/files/file/large.bin"
SMALL_BODY="$(head -c "$SMALL_BYTES" /dev/zero | tr '\0' 'x')"
# The response headers of a catch-up read of that stream (values of the same
# length), for the ceiling-hdrs row.
READ_HEADERS="$(printf '\t\theader {\n'
  printf '\t\t\t%s\n' \
    'Access-Control-Allow-Origin *' \
    'Access-Control-Expose-Headers "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Stream-TTL, Stream-Expires-At, Stream-SSE-Data-Encoding, Producer-Epoch, Producer-Seq, Producer-Expected-Seq, Producer-Received-Seq, ETag, Location, Content-Type"' \
    'Cache-Control "public, max-age=60, stale-while-revalidate=300"' \
    'Content-Type application/octet-stream' \
    'Cross-Origin-Resource-Policy cross-origin' \
    "Etag \"\\\"1:0:$SMALL_BYTES\\\"\"" \
    "Stream-Next-Offset $(printf '%016d_%016d' 0 "$SMALL_BYTES")" \
    'Stream-Up-To-Date true' \
    'X-Content-Type-Options nosniff'
  printf '\t\t}')"

# --- servers -----------------------------------------------------------------
# start_server NAME: starts a fresh instance (fresh data dir) and probes it.
# Sets SERVER_PID and BASE, or REASON and returns 1.
start_server() {
  local name=$1 port cfg data="" lf="$OUT/logs/$1.log"
  local tls=0
  case "$CURRENT_SCENARIO" in *-h2) tls=1 ;; esac
  port="$("$DSBENCH" freeport)"
  BASE="http://127.0.0.1:$port"
  [ "$tls" = 1 ] && BASE="https://127.0.0.1:$port"
  REASON=""
  case "$name" in
    *-disk|rust-*) data="$WORK/data/$name.$RANDOM"; mkdir -p "$data" ;;
  esac
  echo "=== $(date -u +%H:%M:%S) start $name on $BASE ${data:+data $data}" >>"$lf"
  case "$name" in
    ceiling|ours-*|goplugin-*)
      local bin="$BIN"
      case "$name" in goplugin-*) bin="$GOPLUGIN_BIN" ;; esac
      cfg="$WORK/$name.Caddyfile"
      {
        printf '{\n\tadmin off\n\tauto_https off\n\tlog {\n\t\tlevel WARN\n\t}\n'
        [ "$tls" = 1 ] && printf '\tservers {\n\t\tprotocols h1 h2\n\t}\n'
        printf '}\n\n'
        if [ "$tls" = 1 ]; then
          printf 'https://127.0.0.1:%s {\n\ttls %s %s\n' "$port" "$TLS_CERT" "$TLS_KEY"
        else
          printf 'http://127.0.0.1:%s {\n' "$port"
        fi
        if [ "$name" = ceiling ]; then
          printf '\thandle /respond {\n\t\trespond "ok" 200\n\t}\n'
          printf '\thandle /respond-small {\n\t\trespond "%s" 200\n\t}\n' "$SMALL_BODY"
          # The same body with the headers a stream read sends: what they cost
          # net/http alone (row ceiling-hdrs of read-small).
          printf '\thandle /respond-headers {\n%s\n\t\trespond "%s" 200\n\t}\n' "$READ_HEADERS" "$SMALL_BODY"
          printf '\thandle /file/* {\n\t\troot * %s\n\t\tfile_server\n\t}\n' "$WORK/files"
        else
          printf '\troute /v1/stream/* {\n\t\tdurable_streams {\n\t\t\tlong_poll_timeout 30s\n'
          # bodies: half the POSTs are BODIES_MB MB, exactly the limit.
          if [ "$CURRENT_SCENARIO" = bodies ]; then
            printf '\t\t\tmax_append_size %sMB\n' "$BODIES_MB"
            [ -n "${BODIES_BUDGET:-}" ] && printf '\t\t\tmax_inflight_body_bytes %s\n' "$BODIES_BUDGET"
          fi
          [ -n "$data" ] && printf '\t\t\tdata_dir %s\n' "$data"
          printf '\t\t}\n\t}\n'
          # Our engine's counters (group commits); no per-request metrics.
          case "$name" in ours-*) printf '\troute /metrics {\n\t\tmetrics /metrics\n\t}\n' ;; esac
        fi
        printf '}\n'
      } >"$cfg"
      "$bin" run --config "$cfg" --adapter caddyfile >>"$lf" 2>&1 &
      ;;
    node-*)
      node "$BENCH/node-server.mjs" --port "$port" --long-poll-timeout-ms 30000 ${data:+--data-dir "$data"} >>"$lf" 2>&1 &
      ;;
    rust-*)
      # Streams at /<path>, so /v1/stream/... works as it is. Both modes
      # keep one file per stream in the data dir: memory acknowledges once
      # the bytes are in the page cache (no log, no fsync), wal once its
      # write-ahead log is synced.
      local durability=memory
      [ "$name" = rust-wal ] && durability=wal
      "$RUST_BIN" --host 127.0.0.1 --port "$port" --durability "$durability" --data-dir "$data" \
        --long-poll-timeout-ms 30000 >>"$lf" 2>&1 &
      ;;
  esac
  SERVER_PID=$!
  if ! "$DSBENCH" wait -base "$BASE" -pid "$SERVER_PID" -timeout 30s 2>>"$lf"; then
    REASON="did not start: $(last_error "$lf")"
    stop_server
    return 1
  fi
  if [ "$name" != ceiling ] &&
     ! "$DSBENCH" setup -base "$BASE" -path /v1/stream/probe -bytes 200 -chunk 100 -verify -timeout 20s 2>>"$lf"; then
    REASON="probe failed: $(tail -1 "$lf" | rev | cut -c1-200 | rev)"
    stop_server
    return 1
  fi
}

# last_error LOG: the end of the last error message a server logged (Caddy's
# are long chains "provision …: loading module …: <cause>").
last_error() {
  local msg
  msg="$(grep -o '"msg":"[^"]*' "$1" | tail -1 | cut -c8-)"
  [ -n "$msg" ] || msg="$(grep -v '^\s*$' "$1" | tail -2 | tr '\n' ' ')"
  printf '%s' "$msg" | rev | cut -c1-200 | rev
}

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# --- scenarios ---------------------------------------------------------------
WRK="$BENCH/wrk"
STRICT=""
[ "$MODE" = smoke ] && STRICT="-strict"
LIMIT=$(( DUR_S + 60 ))   # wrk's own hard stop

# run_wrk SCENARIO SERVER wrk-args...
# The server's CPU time during the run is recorded too (µs per request).
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
run_wrk() {
  local sc=$1 srv=$2 t0 t1 c0=- c1=-; shift 2
  # Our data_dir server's group commits around the run (the note column).
  case "$srv" in ours-disk) c0=$("$DSBENCH" commits -base "$BASE") ;; esac
  t0=$(cpu_ticks "$SERVER_PID")
  timeout -k 5 "$LIMIT" wrk -d "${DUR_S}s" --timeout 10s "$@" >"$WORK/wrk.out" 2>&1 || true
  t1=$(cpu_ticks "$SERVER_PID")
  case "$srv" in ours-disk) c1=$("$DSBENCH" commits -base "$BASE") ;; esac
  cat "$WORK/wrk.out" >>"$OUT/logs/$srv.log"
  "$DSBENCH" wrkparse -server "$srv" -scenario "$sc" -out "$RESULTS" $STRICT -cpu-ticks $(( t1 - t0 )) \
    -commits "$c0;$c1" <"$WORK/wrk.out"
}

# setup_or_fail SCENARIO SERVER dsbench-setup-args...
setup_streams() {
  local sc=$1 srv=$2; shift 2
  if ! "$DSBENCH" setup -base "$BASE" "$@" 2>"$WORK/setup.err"; then
    "$DSBENCH" record -server "$srv" -scenario "$sc" -out "$RESULTS" -status error \
      -note "setup failed: $(cat "$WORK/setup.err")"
    return 1
  fi
}

ceiling_applies() {
  case "$1" in append-*|read-small|read-large) return 0 ;; esac
  return 1
}

# bodies measures our server's memory only: the reference servers are not
# asked to swallow gigabytes.
scenario_applies() {
  case "$1/$2" in bodies/ours-*) return 0 ;; bodies/*) return 1 ;; esac
  # Subscriptions (§6–§7) are ours only.
  case "$1/$2" in append-subscribed/ours-*) return 0 ;; append-subscribed/*) return 1 ;; esac
  return 0
}

# scenario_na SCENARIO SERVER: why a server cannot run a scenario (printed),
# or false. Such a pair is recorded as skipped with that reason.
scenario_na() {
  case "$1/$2" in
    *-h2/node-*) echo "the Node reference serves plain HTTP/1.1 only (no TLS, no HTTP/2)" ;;
    *-h2/rust-*) echo "the Rust server serves plain HTTP/1.1 only (no TLS, no HTTP/2)" ;;
    many-streams/rust-*)
      # One open file per stream, in both of its modes.
      local hard
      hard="$(ulimit -Hn)"
      if [ "$hard" != unlimited ] && [ "$hard" -lt $(( MANY + 1024 )) ]; then
        echo "the Rust server keeps a file open per stream; RLIMIT_NOFILE's hard limit here is $hard, below $MANY streams"
      else
        return 1
      fi ;;
    *) return 1 ;;
  esac
}

run_scenario() {
  local sc=$1 srv=$2 b=$BASE
  case "$sc" in
    append-1)
      if [ "$srv" = ceiling ]; then run_wrk "$sc" "$srv" -t2 -c64 -s "$WRK/append.lua" "$b/respond" -- 1; return; fi
      setup_streams "$sc" "$srv" -path /v1/stream/append-1 || return 0
      run_wrk "$sc" "$srv" -t2 -c64 -s "$WRK/append.lua" "$b/v1/stream/append-1" -- 1 ;;
    append-64)
      if [ "$srv" = ceiling ]; then run_wrk "$sc" "$srv" -t2 -c64 -s "$WRK/append.lua" "$b/respond" -- 1; return; fi
      setup_streams "$sc" "$srv" -path /v1/stream/append-64 -count 64 || return 0
      run_wrk "$sc" "$srv" -t2 -c64 -s "$WRK/append.lua" "$b/v1/stream/append-64" -- 64 ;;
    append-producer)
      local url="$b/respond"
      if [ "$srv" != ceiling ]; then
        setup_streams "$sc" "$srv" -path /v1/stream/producer || return 0
        url="$b/v1/stream/producer"
      fi
      BENCH_PIPELINE=8 BENCH_TOKEN="$STAMP$RANDOM" run_wrk "$sc" "$srv" -t16 -c16 -s "$WRK/producer.lua" "$url" ;;
    read-small)
      if [ "$srv" = ceiling ]; then
        run_wrk "$sc" ceiling-hdrs -t2 -c64 -s "$WRK/get.lua" "$b/respond-headers"
        run_wrk "$sc" "$srv" -t2 -c64 -s "$WRK/get.lua" "$b/respond-small"
        return
      fi
      setup_streams "$sc" "$srv" -path /v1/stream/small -bytes "$SMALL_BYTES" -chunk 100 -verify || return 0
      run_wrk "$sc" "$srv" -t2 -c64 -s "$WRK/get.lua" "$b/v1/stream/small?offset=-1" ;;
    read-large)
      if [ "$srv" = ceiling ]; then
        timeout -k 5 $(( LIMIT + 60 )) "$DSBENCH" bigread -base "$b" -server "$srv" -scenario "$sc" -out "$RESULTS" -pid "$SERVER_PID" \
          -file -path /file/large.bin -size "$LARGE_BYTES" -conns 2 -duration "${DUR_S}s" || true
        return
      fi
      setup_streams "$sc" "$srv" -path /v1/stream/large -bytes "$LARGE_BYTES" -chunk 1048576 -verify -timeout 240s || return 0
      timeout -k 5 "$LIMIT" "$DSBENCH" bigread -base "$b" -server "$srv" -scenario "$sc" -out "$RESULTS" -pid "$SERVER_PID" \
        -path /v1/stream/large -size "$LARGE_BYTES" -conns 2 -duration "${DUR_S}s" || true ;;
    fanout-sse|fanout-longpoll|fanout-sse-h2|fanout-longpoll-h2)
      local mode=sse proto=()
      case "$sc" in fanout-longpoll*) mode=longpoll ;; esac
      # Browsers: many streams' subscriptions on few connections (100 each).
      case "$sc" in *-h2) proto=(-proto h2 -h2-conns $(( (FANOUT_SUBS + 99) / 100 ))) ;; esac
      timeout -k 5 300 "$DSBENCH" fanout -base "$b" -server "$srv" -scenario "$sc" -out "$RESULTS" -pid "$SERVER_PID" \
        -mode "$mode" -subs "$FANOUT_SUBS" -appends "$FANOUT_APPENDS" -budget "$FANOUT_BUDGET" "${proto[@]}" \
        ${FANOUT_DIAG_ARGS:-} || true ;;
    bodies)
      # 16 concurrent chunked POSTs: 8 of BODIES_MB MB (the raised
      # max_append_size, stored unless the in-flight budget sheds them) and
      # 8 of BODIES_MB MiB (past it: 413).
      timeout -k 5 600 "$DSBENCH" bodies -base "$b" -server "$srv" -scenario "$sc" -out "$RESULTS" -pid "$SERVER_PID" \
        -n 16 -under $(( BODIES_MB * 1000000 )) -over $(( BODIES_MB * 1048576 )) -timeout 540s || true ;;
    many-streams)
      timeout -k 5 $(( ${CREATE_TIMEOUT%s} + LIMIT + 30 )) "$DSBENCH" manystreams -base "$b" -server "$srv" -scenario "$sc" \
        -out "$RESULTS" -pid "$SERVER_PID" -n "$MANY" -conns 64 -duration "${DUR_S}s" -create-timeout "$CREATE_TIMEOUT" || true ;;
    append-subscribed)
      # Alternating phases on one server: appends with no subscription, then
      # with SUB_SUBS pull-wake subscriptions matching every stream (woken
      # once, unclaimed); the record's extra.ratio is with / none (medians).
      timeout -k 5 $(( SUB_ROUNDS * (2 * DUR_S + 180) + 120 )) "$DSBENCH" subscribed -base "$b" -server "$srv" -scenario "$sc" \
        -out "$RESULTS" -pid "$SERVER_PID" -path /v1/stream/subbench/s -n "$SUB_STREAMS" -subs "$SUB_SUBS" -conns 16 \
        -rounds "$SUB_ROUNDS" -duration "${DUR_S}s" || true ;;
  esac
}

# run_one SCENARIO SERVER [ROUND]: one fresh server, one measurement, one
# record (or a record of why not).
run_one() {
  local sc=$1 srv=$2 round=${3:-} lines_before
  if [ "$srv" = ceiling ] && ! ceiling_applies "$sc"; then return; fi
  if ! scenario_applies "$sc" "$srv"; then return; fi
  if na="$(scenario_na "$sc" "$srv")"; then
    "$DSBENCH" record -server "$srv" -scenario "$sc" -out "$RESULTS" -status skipped -note "n/a: $na"
    return
  fi
  CURRENT_SCENARIO="$sc"
  if [ -n "${UNAVAILABLE[$srv]:-}" ]; then
    "$DSBENCH" record -server "$srv" -scenario "$sc" -out "$RESULTS" -status unavailable -note "${UNAVAILABLE[$srv]}"
    return
  fi
  lines_before=$(wc -l <"$RESULTS")
  if ! start_server "$srv"; then
    log "$sc / $srv: unavailable: $REASON"
    "$DSBENCH" record -server "$srv" -scenario "$sc" -out "$RESULTS" -status unavailable -note "$REASON"
    return
  fi
  run_scenario "$sc" "$srv" || true
  # A server that died during the run (crash) is reported as an error.
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    "$DSBENCH" record -server "$srv" -scenario "$sc" -out "$RESULTS" -status error \
      -note "server exited during the run: $(tail -2 "$OUT/logs/$srv.log" | tr '\n' ' ' | cut -c1-200)"
  fi
  stop_server
  if [ "$(wc -l <"$RESULTS")" = "$lines_before" ]; then
    "$DSBENCH" record -server "$srv" -scenario "$sc" -out "$RESULTS" -status error -note "no result (see logs/$srv.log)"
  fi
  log "$sc / $srv${round:+ (round $round)}: $(tail -1 "$RESULTS" | cut -c1-160)"
}

# Servers measured in rounds: ours and Rust's (the targets compare them).
in_rounds() {
  case "$1/$2" in fanout-sse/ours-*|fanout-sse/rust-*|fanout-longpoll/ours-*|fanout-longpoll/rust-*) return 0 ;; esac
  return 1
}

log "mode $MODE, ${DUR_S}s per run; scenarios: $SCENARIOS; servers: $SERVERS; fan-out rounds: $ROUNDS; results: $OUT"
for sc in $SCENARIOS; do
  # Round 1 runs every server in the listed order; later rounds run the
  # ones in_rounds again, alternating the order (reversed on even rounds)
  # so no server always follows the same one.
  for srv in $SERVERS; do run_one "$sc" "$srv" "$( [ "$ROUNDS" -gt 1 ] && in_rounds "$sc" "$srv" && echo 1)"; done
  for round in $(seq 2 "$ROUNDS"); do
    order="$SERVERS"
    [ $(( round % 2 )) = 0 ] && order="$(echo $SERVERS | tr ' ' '\n' | tac | tr '\n' ' ')"
    for srv in $order; do
      in_rounds "$sc" "$srv" || continue
      run_one "$sc" "$srv" "$round"
    done
  done
done

# --- report ------------------------------------------------------------------
{
  echo "date: $DATE_START, $(( $(date +%s) - T0 ))s including the build"
  echo "mode: $MODE (${DUR_S}s per load test; fan-out $FANOUT_SUBS subscribers x $FANOUT_APPENDS appends within $FANOUT_BUDGET, $ROUNDS round(s) of fanout-sse and fanout-longpoll for ours and Rust (medians); large stream $LARGE_MIB MiB; many-streams $MANY streams)"
  echo "commit: $COMMIT_START"
  echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r); client and servers share it; load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "load tools: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), dsbench (tests/bench/dsbench, $(go env GOVERSION))"
  echo "node reference: @durable-streams/server ${NODE_PKG_VERSION:-unavailable} on node $(node --version 2>/dev/null || echo none)"
  echo "go plugin: $GO_PLUGIN_MODULE: $GOPLUGIN_STATUS"
  echo "rust reference: $RUST_STATUS"
  echo "scenarios: append = 100-byte POSTs by wrk (-t2 -c64); producer = 16 wrk threads x 1 connection, 8 pipelined POSTs with Producer-Id/Epoch/Seq; read-small = GET ?offset=-1 of a ${SMALL_BYTES}-byte stream (ceiling: respond with a ${SMALL_BYTES}-byte body); read-large = 2 readers following Stream-Next-Offset through the whole stream (ceiling: file_server, 1 MiB Range requests); fan-out = dsbench, one connection per subscriber (raw sockets read by 2 epoll loops polling every 250 µs; a long-poll subscriber re-issues its request on the same connection as soon as an answer is in); fan-out *-h2 = the same over TLS + HTTP/2, 100 subscribers per connection, net/http subscribers; many-streams = 64 connections creating, then appending 100 B to random streams; bodies = 16 concurrent chunked POSTs to their own streams, 8 of ${BODIES_MB} MB (= max_append_size) and 8 of ${BODIES_MB} MiB (past it), the server's peak RSS growth; append-subscribed = 16 connections appending 100 B to random ones of $SUB_STREAMS streams, alternating phases with none and with $SUB_SUBS pull-wake pattern subscriptions matching every stream (woken once, unclaimed), $SUB_ROUNDS round(s), medians"
} >"$OUT/meta.txt"

echo
TARGETS=true
[ "$MODE" = smoke ] && TARGETS=false
"$DSBENCH" report -in "$RESULTS" -out "$OUT" -meta "$OUT/meta.txt" -targets=$TARGETS
if [ "$MODE" != smoke ] && command -v gnuplot >/dev/null; then
  gnuplot -e "dir='$OUT'" "$BENCH/plot.gp" 2>"$OUT/logs/gnuplot.log" || log "gnuplot failed (see $OUT/logs/gnuplot.log)"
fi
echo
log "done in $(( $(date +%s) - T0 ))s: $OUT/results.md"

if [ "$MODE" = smoke ]; then
  bad=$(grep -vc '"status":"ok"' "$RESULTS" || true)
  if [ "$bad" != 0 ]; then
    echo "smoke: $bad scenario(s) failed (logs in $OUT/logs):" >&2
    grep -v '"status":"ok"' "$RESULTS" >&2
    exit 1
  fi
  echo "smoke: all $(wc -l <"$RESULTS") scenarios ok"
  # A passing smoke run leaves nothing behind; a failing one keeps its logs.
  [ "$OUT_TEMP" = 1 ] && rm -rf "$OUT"
fi
