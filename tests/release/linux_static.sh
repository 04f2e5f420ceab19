#!/usr/bin/env bash
# The linux release binary is static and serves streams with nothing else
# around it: an empty root directory holding only the binary and a
# Caddyfile (no libc, no /etc, no /dev), entered with chroot(8).
#
#   tests/release/linux_static.sh <binary> [runner...]
#
# A runner (e.g. qemu-aarch64-static for linux_arm64) is copied into the
# root beside the binary and runs it there. Needs root (chroot).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
[ $# -ge 1 ] || { echo "usage: $0 <binary> [runner]" >&2; exit 2; }
bin=$1
runner=${2:-}

fail=0
desc=$(file -b "$bin")
echo "file: $desc"
case $desc in *"statically linked"*|*"static-pie linked"*) echo "ok   file says static" ;;
  *) echo "FAIL file does not say statically linked" >&2; fail=1 ;; esac
case $desc in *"not stripped"*) echo "FAIL not stripped" >&2; fail=1 ;; *) echo "ok   stripped" ;; esac
if readelf -l "$bin" | grep -q 'INTERP'; then echo "FAIL has an ELF interpreter" >&2; fail=1; else echo "ok   no ELF interpreter"; fi
if readelf -d "$bin" 2>/dev/null | grep -q NEEDED; then echo "FAIL needs shared libraries" >&2; fail=1; else echo "ok   no NEEDED shared library"; fi

root=$(mktemp -d "${TMPDIR:-/tmp}/ds-release-root.XXXXXX")
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT
cp "$bin" "$root/durable-streams-server"
cmd=(/durable-streams-server)
if [ -n "$runner" ]; then
  cp "$(command -v "$runner")" "$root/runner"
  cmd=(/runner /durable-streams-server)
fi
mkdir "$root/data"
port=$(free_port)
write_caddyfile "$root/Caddyfile" "$port" /data/streams

start() {
  env -i HOME=/data XDG_CONFIG_HOME=/data/xdg XDG_DATA_HOME=/data/xdg \
    "$(command -v chroot)" "$root" "${cmd[@]}" run --config /Caddyfile --adapter caddyfile >>"$root/server.log" 2>&1 &
  pid=$!
  wait_health "$port" "$pid" 60 || { tail -20 "$root/server.log" >&2; return 1; }
}
stop() {
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
}

echo "root holds: $(cd "$root" && find . -mindepth 1 -maxdepth 1 | sort | tr '\n' ' ')"
start || exit 1
round_trip "$port" release-smoke || fail=1
stop
start || exit 1
read_back "$port" release-smoke || fail=1
stop
[ -d "$root/data/streams/streams.db" ] && echo "ok   data_dir written inside the chroot" || { echo "FAIL no streams.db" >&2; fail=1; }
[ $fail -eq 0 ] && echo "linux_static: PASS" || echo "linux_static: FAIL"
exit $fail
