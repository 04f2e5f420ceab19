# Shared by tests/release/*.sh (sourced): a Caddyfile, a free port, waiting
# for /health, and the create/append/read round trip every artifact must pass.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# write_caddyfile <file> <port> [data_dir as the server will see it]
write_caddyfile() {
  local storage=""
  [ -n "${3:-}" ] && storage="			data_dir \"$3\""
  cat >"$1" <<CADDY
{
	admin off
	auto_https off
}

http://127.0.0.1:$2 {
	handle /health {
		respond "OK" 200
	}
	route /v1/stream/* {
		durable_streams {
$storage
		}
	}
}
CADDY
}

# wait_health <port> <pid> <seconds>: the server answers /health, or fail.
wait_health() {
  local end=$((SECONDS + $3))
  while [ $SECONDS -lt "$end" ]; do
    kill -0 "$2" 2>/dev/null || { echo "server exited before answering /health" >&2; return 1; }
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/health")" = 200 ] && return 0
    sleep 0.2
  done
  echo "no /health answer within $3 s" >&2
  return 1
}

# expect <what> <want> <got>
expect() {
  if [ "$2" != "$3" ]; then
    echo "FAIL $1: want '$2', got '$3'" >&2
    return 1
  fi
  echo "ok   $1: $3"
}

# round_trip <port> <stream>: PUT creates (201), two POSTs append (204), a
# GET from the start returns exactly the appended bytes (200).
round_trip() {
  local url=http://127.0.0.1:$1/v1/stream/$2 rc=0
  expect "PUT $2" 201 "$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: text/plain' "$url")" || rc=1
  expect "POST $2" 204 "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: text/plain' --data-binary 'hello ' "$url")" || rc=1
  expect "POST $2" 204 "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: text/plain' --data-binary 'world' "$url")" || rc=1
  expect "GET $2 status" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$url?offset=-1")" || rc=1
  expect "GET $2 body" "hello world" "$(curl -s "$url?offset=-1")" || rc=1
  return $rc
}

# read_back <port> <stream>: the stream still holds "hello world" (after a restart).
read_back() {
  expect "GET $2 after restart" "hello world" "$(curl -s "http://127.0.0.1:$1/v1/stream/$2?offset=-1")"
}

# delete_and_recreate <port> <stream>: after a round trip (its segment file
# is open in the server), DELETE answers 204 and the stream is gone (404);
# the same name is created anew (201) and holds only what is appended to it
# now. On Windows this needs files opened with FILE_SHARE_DELETE and a
# delete that frees the name while a handle is still open.
delete_and_recreate() {
  local url=http://127.0.0.1:$1/v1/stream/$2 rc=0
  round_trip "$1" "$2" || rc=1
  expect "DELETE $2" 204 "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$url")" || rc=1
  expect "GET $2 after DELETE" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$url?offset=-1")" || rc=1
  expect "PUT $2 again" 201 "$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: text/plain' "$url")" || rc=1
  expect "POST $2 again" 204 "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: text/plain' --data-binary 'again' "$url")" || rc=1
  expect "GET $2 again" "again" "$(curl -s "$url?offset=-1")" || rc=1
  return $rc
}
