#!/usr/bin/env bash
# Runs the Durable Streams conformance suite against the real binary.
#
#   tests/conformance/run.sh <binary> <memory|data_dir> [extra vitest args...]
#
# Writes a Caddyfile into a temp dir, starts the server on a free loopback
# port (data_dir mode: with a fresh temp data dir), waits for /health, runs
# the suite, stops the server and prints "N passed, N failed[, N skipped]" as
# its last line. Exits non-zero if any test failed, vitest failed, or the
# server died.
#
# Environment:
#   DS_CONFORMANCE_EXCLUDE        JS regex over full test names ("<describe> <test>");
#                                 matching tests are skipped, e.g. '^Fork - '
#   DS_CONFORMANCE_SUBSCRIPTIONS  1 (default) runs the subscription tests, 0 skips them
#   DS_CONFORMANCE_LONG_POLL_MS   server long_poll_timeout and suite longPollTimeoutMs
#                                 (default 2000)
#   DS_CONFORMANCE_DEADLINE_S     stop the suite after this many seconds (default 1200)
#   DS_CONFORMANCE_KEEP_TMP       1 keeps the temp dir (Caddyfile, server.log, data)
#   DS_CONFORMANCE_RUNNER         command that runs the binary, e.g. qemu-aarch64-static
#                                 (tests/release runs the linux_arm64 build that way)
# Extra arguments go to `vitest run` (e.g. --reporter=verbose). Note that -t
# replaces the DS_CONFORMANCE_EXCLUDE pattern.
set -euo pipefail

usage() { echo "usage: $0 <binary> <memory|data_dir> [vitest args...]" >&2; exit 2; }
[ $# -ge 2 ] || usage
bin=$1 mode=$2
shift 2
case $mode in memory|data_dir) ;; *) usage ;; esac

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ -x "$bin" ] || { echo "run.sh: binary not found or not executable: $bin" >&2; exit 2; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
[ -x "$here/node_modules/.bin/vitest" ] || {
  echo "run.sh: $here/node_modules is missing; run 'npm ci' there (or 'make test-conformance')" >&2
  exit 2
}

long_poll_ms=${DS_CONFORMANCE_LONG_POLL_MS:-2000}
subscriptions=${DS_CONFORMANCE_SUBSCRIPTIONS:-1}
health_deadline_s=${DS_CONFORMANCE_HEALTH_S:-30}  # longer under an emulator
suite_deadline_s=${DS_CONFORMANCE_DEADLINE_S:-1200}
stop_deadline_s=10

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ds-conformance.XXXXXX")
log=$tmp/server.log
counts=$tmp/counts
[ "${DS_CONFORMANCE_KEEP_TMP:-0}" = 1 ] && echo "run.sh: keeping $tmp (Caddyfile, server.log, data)" >&2
server_pid=""
vitest_pid=""

kill_tree() { # pid: signal its process group (see spawn), or just it
  kill -"$2" -- "-$1" 2>/dev/null || kill -"$2" "$1" 2>/dev/null || true
}

# Replaces the calling (sub)shell with the command, in its own session and
# process group when setsid exists, so that its whole process tree (vitest
# workers) can be signalled at once. The pid stays the subshell's $!.
spawn() { if command -v setsid >/dev/null; then exec setsid -w "$@"; else exec "$@"; fi; }

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && ! grep -q '^[^)]*) Z' "/proc/$1/stat" 2>/dev/null; }

stop_server() {
  [ -n "$server_pid" ] || return 0
  if alive "$server_pid"; then
    kill -TERM "$server_pid" 2>/dev/null || true
    local end=$((SECONDS + stop_deadline_s))
    while alive "$server_pid" && [ $SECONDS -lt $end ]; do sleep 0.1; done
    if alive "$server_pid"; then
      echo "run.sh: server did not stop within ${stop_deadline_s}s; killing it" >&2
      kill -KILL "$server_pid" 2>/dev/null || true
    fi
  fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$vitest_pid" ] && alive "$vitest_pid"; then
    kill_tree "$vitest_pid" TERM
    wait "$vitest_pid" 2>/dev/null || true
  fi
  stop_server
  [ "${DS_CONFORMANCE_KEEP_TMP:-0}" = 1 ] || rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT
trap 'echo "run.sh: terminated" >&2; exit 143' TERM

log_tail() {
  echo "---- server log (last 40 lines of $log) ----" >&2
  tail -n 40 "$log" >&2 || true
  echo "---- end of server log ----" >&2
}

# Startup failed: show the log and report the run as one failure, so the
# count line is always there.
startup_failed() {
  echo "run.sh: $1" >&2
  log_tail
  stop_server
  echo "conformance ($mode): could not start the server: $1"
  echo "0 passed, 1 failed"
  exit 1
}

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# GET /health over bash's /dev/tcp (no curl needed); true on HTTP 200.
health_ok() {
  local line
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3 || { exec 3<&-; return 1; }
  IFS= read -r -t 2 line <&3 || line=""
  exec 3<&-
  [[ $line == "HTTP/1."?" 200"* ]]
}

write_caddyfile() {
  local port=$1 storage=""
  [ "$mode" = data_dir ] && storage=$'\t\t\tdata_dir "'"$tmp/data"'"'
  cat >"$tmp/Caddyfile" <<EOF
{
	admin off
	auto_https off
	grace_period 2s
}

http://127.0.0.1:$port {
	handle /health {
		respond "OK" 200
	}
	route /v1/stream/* {
		durable_streams {
			long_poll_timeout ${long_poll_ms}ms
			webhook_allow_dev on
$storage
		}
	}
}
EOF
}

# Start the server; retry on another port if the one we picked got taken.
port=""
for attempt in 1 2 3 4 5; do
  port=$(free_port)
  write_caddyfile "$port"
  if [ "$mode" = data_dir ]; then rm -rf "$tmp/data"; mkdir -p "$tmp/data"; fi
  : >"$log"
  # XDG dirs keep Caddy's autosave/state out of $HOME.
  (
    export XDG_CONFIG_HOME=$tmp/xdg-config XDG_DATA_HOME=$tmp/xdg-data
    # shellcheck disable=SC2086 # the runner may be a command with arguments
    spawn ${DS_CONFORMANCE_RUNNER:-} "$bin" run --config "$tmp/Caddyfile" --adapter caddyfile
  ) >"$log" 2>&1 </dev/null &
  server_pid=$!
  end=$((SECONDS + health_deadline_s))
  up=0
  while [ $SECONDS -lt $end ]; do
    if ! alive "$server_pid"; then break; fi
    if health_ok "$port"; then up=1; break; fi
    sleep 0.1
  done
  [ $up = 1 ] && break
  if ! alive "$server_pid" && grep -qi 'address already in use' "$log"; then
    echo "run.sh: port $port was taken; retrying" >&2
    stop_server
    continue
  fi
  if alive "$server_pid"; then
    startup_failed "server did not answer GET /health 200 within ${health_deadline_s}s"
  else
    startup_failed "server exited during startup"
  fi
done
[ $up = 1 ] || startup_failed "could not find a free port"

base_url=http://127.0.0.1:$port
case $subscriptions in 1|true|yes) subscriptions=true ;; *) subscriptions=false ;; esac
echo "== conformance: mode=$mode url=$base_url long_poll_timeout=${long_poll_ms}ms subscriptions=$subscriptions exclude=${DS_CONFORMANCE_EXCLUDE:-<none>} =="

start=$SECONDS
(
  cd "$here"
  export DS_CONFORMANCE_URL=$base_url \
    DS_CONFORMANCE_HEALTH_URL=$base_url/health \
    DS_CONFORMANCE_LONG_POLL_MS=$long_poll_ms \
    DS_CONFORMANCE_SUBSCRIPTIONS=$subscriptions \
    DS_CONFORMANCE_COUNTS_FILE=$counts
  spawn node_modules/.bin/vitest run "$@"
) </dev/null &
vitest_pid=$!

server_died=0
timed_out=0
while alive "$vitest_pid"; do
  if [ $server_died = 0 ] && ! alive "$server_pid"; then
    server_died=1
    echo "run.sh: the server died during the run" >&2
    log_tail
  fi
  if [ $timed_out = 0 ] && [ $((SECONDS - start)) -ge "$suite_deadline_s" ]; then
    timed_out=1
    echo "run.sh: the suite ran longer than ${suite_deadline_s}s; stopping it" >&2
    kill_tree "$vitest_pid" TERM
    kill_end=$((SECONDS + 10))
  fi
  if [ $timed_out = 1 ] && [ $SECONDS -ge "$kill_end" ]; then
    kill_tree "$vitest_pid" KILL
  fi
  sleep 0.2
done
vitest_rc=0
wait "$vitest_pid" || vitest_rc=$?
vitest_pid=""
if [ $server_died = 0 ] && ! alive "$server_pid"; then
  server_died=1
  echo "run.sh: the server died during the run" >&2
  log_tail
fi
elapsed=$((SECONDS - start))
stop_server

if [ -s "$counts" ] && [ $timed_out = 0 ]; then
  line=$(tail -n 1 "$counts")
else
  echo "run.sh: vitest exited ($vitest_rc) without reporting results" >&2
  line="0 passed, 1 failed"
fi
failed=$(sed -n 's/^[0-9]* passed, \([0-9]*\) failed.*/\1/p' <<<"$line")
status="finished in ${elapsed}s, vitest exit code $vitest_rc"
[ $server_died = 0 ] || status="$status, SERVER DIED"
[ $timed_out = 0 ] || status="$status, TIMED OUT after ${suite_deadline_s}s"
echo "conformance ($mode): $status"
echo "$line"
if [ "${failed:-1}" != 0 ] || [ "$vitest_rc" != 0 ] || [ $server_died = 1 ] || [ $timed_out = 1 ]; then
  exit 1
fi
exit 0
