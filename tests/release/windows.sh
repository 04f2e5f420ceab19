#!/usr/bin/env bash
# The windows_amd64 release binary under Wine: starts with a data_dir,
# creates, appends and reads a stream; deletes a second stream whose files
# are open and creates it again under the same name; restarts and reads both
# back; reports data.mdb's size (LMDB extends it to the whole map on
# Windows: it must stay at the small initial map); then the same round trip
# in memory.
#
#   tests/release/windows.sh <durable-streams-server.exe>
#
# Needs wine (Debian: apt-get install wine wine64).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
[ $# -eq 1 ] || { echo "usage: $0 <exe>" >&2; exit 2; }
exe=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
wine=$(command -v wine64 || command -v wine || true)
[ -n "$wine" ] || { echo "windows.sh: wine is not installed" >&2; exit 2; }

fail=0
desc=$(file -b "$exe")
echo "file: $desc"
case $desc in *"PE32+ executable"*"x86-64"*) echo "ok   PE32+ x86-64" ;; *) echo "FAIL not a PE32+ x86-64 executable" >&2; fail=1 ;; esac
# Only Windows' own DLLs may be imported (no libstdc++/libgcc/winpthread DLL).
dlls=$(objdump -p "$exe" 2>/dev/null | sed -n 's/^\s*DLL Name: //p' | tr 'A-Z' 'a-z' | sort -u | tr '\n' ' ')
echo "imports: $dlls"
for d in $dlls; do
  case $d in kernel32.dll|ntdll.dll|advapi32.dll|ws2_32.dll|winmm.dll|user32.dll|bcrypt.dll|crypt32.dll|iphlpapi.dll|secur32.dll|userenv.dll|netapi32.dll|dnsapi.dll|mswsock.dll|shell32.dll|ole32.dll|powrprof.dll|api-ms-win-*|msvcrt.dll|ucrtbase.dll) ;;
    *) echo "FAIL imports a non-system DLL: $d" >&2; fail=1 ;; esac
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ds-release-wine.XXXXXX")
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  WINEPREFIX=$tmp/prefix wineserver -k 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
export WINEPREFIX=$tmp/prefix WINEDEBUG=-all HOME=$tmp
# Wine 8 (Debian 12) lacks bcryptprimitives.dll, which Go's runtime loads;
# a stand-in (wine/bcryptprimitives.c, built with zig) goes into the
# prefix's System32. Newer Wine and every Windows 10+ have the real one.
if ! "$wine" --version 2>/dev/null | grep -qE 'wine-(9|[1-9][0-9])\.'; then
  zig=$(python3 -c 'import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))' 2>/dev/null) || {
    echo "windows.sh: Wine 8 needs a bcryptprimitives.dll stand-in built with zig: pip install ziglang" >&2; exit 2; }
  zc=${ZIG_CACHE:-$(cd "$here/../.." && pwd)/build/zig-cache}  # shared with tools/release/build.sh
  (cd "$tmp" && ZIG_GLOBAL_CACHE_DIR=$zc ZIG_LOCAL_CACHE_DIR=$zc \
    "$zig" cc -target x86_64-windows-gnu -shared -O2 -o "$tmp/bcryptprimitives.dll" "$here/wine/bcryptprimitives.c" -ladvapi32)
  # Go loads it from System32 only: make the prefix, then put it there.
  "$wine" wineboot --init >/dev/null 2>&1 || true
  cp "$tmp/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/"
  export WINEDLLOVERRIDES="bcryptprimitives=n"
fi
# Z: is Wine's view of / ; the server sees Windows paths.
winpath() { echo "Z:${1//\//\\}"; }

start() { # <caddyfile> <port>
  XDG_CONFIG_HOME=$(winpath "$tmp/xdg") XDG_DATA_HOME=$(winpath "$tmp/xdg") \
    "$wine" "$exe" run --config "$(winpath "$1")" --adapter caddyfile >>"$tmp/server.log" 2>&1 &
  pid=$!
  wait_health "$2" "$pid" 180 || { tail -30 "$tmp/server.log" >&2; return 1; }
}
stop() {
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
  wineserver -k 2>/dev/null || true
}

port=$(free_port)
mkdir -p "$tmp/data"
write_caddyfile "$tmp/Caddyfile.disk" "$port" "$(winpath "$tmp/data")"
echo "-- data_dir"
start "$tmp/Caddyfile.disk" "$port" || exit 1
round_trip "$port" wine-disk || fail=1
delete_and_recreate "$port" wine-deleted || fail=1
stop
start "$tmp/Caddyfile.disk" "$port" || exit 1
read_back "$port" wine-disk || fail=1
expect "GET wine-deleted after restart" "again" \
  "$(curl -s "http://127.0.0.1:$port/v1/stream/wine-deleted?offset=-1")" || fail=1
stop
# LMDB on Windows sizes data.mdb to its map: the store starts the map at
# 16 MiB there (and doubles it when full) rather than 1 GiB.
mdb=$(find "$tmp/data" -name data.mdb | head -1)
if [ -z "$mdb" ]; then echo "FAIL no data.mdb under the data_dir" >&2; fail=1
else
  size=$(stat -c %s "$mdb")
  echo "data.mdb: $size bytes ($((size / 1048576)) MiB)"
  [ "$size" -le $((64 << 20)) ] || { echo "FAIL data.mdb is larger than 64 MiB" >&2; fail=1; }
fi
echo "-- memory"
port=$(free_port)
write_caddyfile "$tmp/Caddyfile.mem" "$port"
start "$tmp/Caddyfile.mem" "$port" || exit 1
round_trip "$port" wine-mem || fail=1
stop
[ $fail -eq 0 ] && echo "windows: PASS" || { echo "windows: FAIL"; tail -20 "$tmp/server.log"; }
exit $fail
