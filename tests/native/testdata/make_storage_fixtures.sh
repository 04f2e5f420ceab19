#!/usr/bin/env bash
# Writes a data directory with a given server binary, for the storage
# upgrade tests (lmdb_store_test.cc, "UpgradeFixture"): the checked-in
# format4/ and format5/ were made by this script with the servers of
# commits e553151 (storage format 4) and 3f09a78 (storage format 5):
#
#   tests/native/testdata/make_storage_fixtures.sh BIN OUT_DIR
#
# Streams (fsync always, the default; the server is stopped cleanly):
#   small  text/plain        "hello, stored fixture\n"          (inline under format 5)
#   grown  text/plain        3000 x 'a', then 3000 x 'b'        (format 5: 3000 inline, then a file)
#   empty  text/plain        nothing
#   json   application/json  {"n":1} and {"n":2}, one POST each
#   closed text/plain        "last\n", then closed
set -euo pipefail
BIN=$1 OUT=$2
WORK=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat >"$WORK/Caddyfile" <<CFG
{
	admin off
	auto_https off
}
http://127.0.0.1:$port {
	route /v1/stream/* {
		durable_streams {
			data_dir $WORK/data
		}
	}
}
CFG
"$BIN" run --config "$WORK/Caddyfile" --adapter caddyfile >"$WORK/log" 2>&1 &
PID=$!
B=http://127.0.0.1:$port/v1/stream
for _ in $(seq 100); do curl -s -o /dev/null "$B/x" && break; sleep 0.1; done
put() { curl -sf -o /dev/null -X PUT -H "Content-Type: $2" "$B/$1"; }
post() { curl -sf -o /dev/null -X POST -H "Content-Type: $2" --data-binary "$3" "$B/$1"; }
put small text/plain
post small text/plain $'hello, stored fixture\n'
put grown text/plain
post grown text/plain "$(head -c 3000 /dev/zero | tr '\0' a)"
post grown text/plain "$(head -c 3000 /dev/zero | tr '\0' b)"
put empty text/plain
put json application/json
post json application/json '{"n":1}'
post json application/json '{"n":2}'
put closed text/plain
post closed text/plain $'last\n'
curl -sf -o /dev/null -X POST -H "Content-Type: text/plain" -H "Stream-Closed: true" "$B/closed"
kill -TERM "$PID"
wait "$PID" || true
rm -rf "$OUT"
mkdir -p "$OUT/streams.db"
cp "$WORK/data/streams.db/data.mdb" "$OUT/streams.db/"
cp -r "$WORK/data/segments" "$OUT/"
find "$OUT" -type f | sort | xargs ls -l
