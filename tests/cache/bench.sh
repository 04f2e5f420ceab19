#!/usr/bin/env bash
# Long-poll fan-out through Varnish (packaging/varnish/durable-streams.vcl)
# against the same readers on the origin directly.
#
#   tests/cache/bench.sh [--readers N] [--appends N] [--no-build]
#
# Starts our server (memory, metrics on) and varnishd on 127.0.0.1 ports
# chosen by the kernel, runs tests/bench/dsbench `fanout -mode longpoll`
# (one connection per reader, each echoing Stream-Cursor) once with its base
# URL on Varnish and once on the origin, and prints per run: readers, origin
# reads (GETs counted by the server's caddy_durable_streams_requests_total),
# origin reads answered with data per append,
# delivery latency p50/p99 and the CPU seconds the origin (and Varnish) used.
# Stops everything it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD

READERS=${READERS:-10000}
APPENDS=${APPENDS:-10}
VARNISH_PARAMS=${VARNISH_PARAMS:--p thread_pool_min=200 -p thread_pool_max=5000}
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --readers) READERS=$2; shift 2 ;;
    --appends) APPENDS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) echo "usage: $0 [--readers N] [--appends N] [--no-build]" >&2; exit 2 ;;
  esac
done

VARNISHD=$(command -v varnishd || true)
[ -z "$VARNISHD" ] && [ -x /usr/sbin/varnishd ] && VARNISHD=/usr/sbin/varnishd
if [ -z "$VARNISHD" ]; then
  echo "cache-bench: SKIP: varnishd is not installed (apt-get install varnish)"
  exit 0
fi

# One descriptor per reader in dsbench, in Varnish and (direct run) in the
# server, each its own process: the hard limit must fit READERS + slack.
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ $((READERS + 512)) -gt "$hard" ]; then
  echo "cache-bench: RLIMIT_NOFILE hard limit $hard: readers lowered from $READERS to $((hard - 512))"
  READERS=$((hard - 512))
fi
ulimit -n "$hard"

if [ "$BUILD" = 1 ]; then make --no-print-directory build; fi
BIN=$ROOT/bin/durable-streams-server
WORK=$(mktemp -d /tmp/cache-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

go build -o "$WORK/dsbench" ./tests/bench/dsbench

ORIGIN_PORT=$(freeport)
cat >"$WORK/Caddyfile" <<CADDY
{
	admin off
	auto_https off
	persist_config off
	metrics
}
http://127.0.0.1:$ORIGIN_PORT {
	handle /health {
		respond "OK" 200
	}
	handle /metrics {
		metrics
	}
	route /v1/stream/* {
		durable_streams {
			long_poll_timeout 30s
		}
	}
}
CADDY
XDG_CONFIG_HOME=$WORK/config XDG_DATA_HOME=$WORK/data \
  "$BIN" run --config "$WORK/Caddyfile" --adapter caddyfile >"$WORK/origin.log" 2>&1 &
ORIGIN_PID=$!
PIDS+=("$ORIGIN_PID")
ORIGIN=http://127.0.0.1:$ORIGIN_PORT

CACHE_PORT=$(freeport)
sed -E "s/\\.port = \"[0-9]+\";/.port = \"$ORIGIN_PORT\";/" packaging/varnish/durable-streams.vcl >"$WORK/ds.vcl"
# Threads: parked long-polls wait without one (waiting list, idle
# connections); the rush after an answer needs some. 256 MB of objects.
# VARNISH_PARAMS="-p rush_exponent=64 ..." tries other parameters.
"$VARNISHD" -F -j none -n "$WORK/varnish" -a "127.0.0.1:$CACHE_PORT" -T 127.0.0.1:0 \
  -f "$WORK/ds.vcl" -s malloc,256m $VARNISH_PARAMS >"$WORK/varnish.log" 2>&1 &
VARNISH_PID=$!
PIDS+=("$VARNISH_PID")
CACHE=http://127.0.0.1:$CACHE_PORT

for url in "$ORIGIN/health" "$CACHE/health"; do
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && break
    sleep 0.1
  done
  curl -fsS -o /dev/null "$url" || { echo "cache-bench: $url never answered"; tail -20 "$WORK"/*.log; exit 1; }
done

# GETs the origin answered: all of them, and those answered 200 (with data).
origin_gets() {
  curl -fsS "$ORIGIN/metrics" | awk '/^caddy_durable_streams_requests_total\{/ && /method="GET"/ { s += $NF; if (/code="200"/) d += $NF } END { printf "%d %d\n", s, d }'
}
# utime + stime of a process and its threads, in seconds.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"; }
# Varnish's cache process (the worker child of the manager).
varnish_child() { pgrep -P "$VARNISH_PID" -n varnishd || pgrep -P "$VARNISH_PID" -n cache-main || pgrep -P "$VARNISH_PID" -n; }
vstat() { varnishstat -n "$WORK/varnish" -1 -f "$1" | awk -v n="$1" '$1 == n { print $2 }'; }

printf '%-8s %8s %8s %12s %17s %9s %9s %12s %13s\n' run readers appends origin_reads data_reads/append p50_ms p99_ms origin_cpu_s varnish_cpu_s
run() {
  local name=$1 base=$2
  local vchild; vchild=$(varnish_child)
  local gets0 cpu0 vcpu0 miss0
  gets0=$(origin_gets); cpu0=$(cpu_s "$ORIGIN_PID"); vcpu0=$(cpu_s "$vchild"); miss0=$(vstat MAIN.cache_miss)
  "$WORK/dsbench" fanout -base "$base" -server durable-streams -scenario "fanout-longpoll-$name" \
    -out "$WORK/$name.jsonl" -pid "$ORIGIN_PID" -path "/v1/stream/hot-$name" -mode longpoll \
    -subs "$READERS" -appends "$APPENDS" -budget 240s -connect-timeout 120s -deliver-timeout 10s \
    >"$WORK/$name.out" 2>&1 || true
  local gets1 cpu1 vcpu1 miss1
  gets1=$(origin_gets); cpu1=$(cpu_s "$ORIGIN_PID"); vcpu1=$(cpu_s "$vchild"); miss1=$(vstat MAIN.cache_miss)
  python3 - "$WORK/$name.jsonl" "$name" "$APPENDS" "${gets1% *}" "${gets0% *}" "${gets1#* }" "${gets0#* }" "$cpu0" "$cpu1" "$vcpu0" "$vcpu1" "$((miss1 - miss0))" <<'PY'
import json, sys
path, name, appends, g1, g0, d1, d0, c0, c1, v0, v1, miss = sys.argv[1:]
rec = json.loads(open(path).read().strip().splitlines()[-1])
appends, gets, data = int(appends), int(g1) - int(g0), int(d1) - int(d0)
ex = rec.get("extra", rec.get("Extra", {})) or {}
connected = int(ex.get("connected", 0))
# Origin reads answered 200 carry an append to readers; one of them is the
# setup read of the tail (GET ?offset=-1). Parked reads still open when the
# run ends are not counted (the metric counts answered requests).
per_append = (data - 1) / appends
vcpu = float(v1) - float(v0) if name == "cache" else 0.0
p50 = rec.get("p50_ms", rec.get("P50Ms"))
p99 = rec.get("p99_ms", rec.get("P99Ms"))
print(f"{name:<8} {connected:>8} {appends:>8} {gets:>12} {per_append:>17.1f} {p50:>9} {p99:>9} {float(c1)-float(c0):>12.2f} {vcpu:>13.2f}")
if rec.get("status") != "ok":
    print(f"  {name}: dsbench status {rec.get('status')}: {rec.get('note')}")
if name == "cache":
    print(f"  cache: Varnish misses (reads sent to the origin) during the run: {miss}")
PY
}
run cache "$CACHE"
run origin "$ORIGIN"
