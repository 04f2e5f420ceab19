#!/usr/bin/env bash
# A durable-streams cluster on one machine (README, Scaling): N nodes, each
# in its own network namespace (veth pair, a private /30 that exists only
# inside this test), and a router in the host namespace on 127.0.0.1, all
# from the shipped examples/cluster/{node,router}.Caddyfile. Without
# network namespaces (not root, no `ip netns`), nodes listen on distinct
# loopback addresses 127.X.Y.i instead.
#
#   topology.sh up <dir> [nodes]   start everything; <dir>/env says where
#   topology.sh kill <dir> <i>     kill -9 node i (1-based)
#   topology.sh start <dir> <i>    start node i again on its data_dir
#   topology.sh down <dir>         stop everything `up` started
#   topology.sh run [nodes]        up in a temp dir, wait for Ctrl-C, down
#
# <dir>/env (shell syntax): MODE (netns|loopback), ROUTER_URL, ROUTER_ADMIN,
# PINS_FILE, NODES, NODE<i>_URL, NODE<i>_ADMIN, NODE<i>_UPSTREAM,
# NODE<i>_DATA. A cache (Varnish) can go between router and nodes: point
# the router's DS_NODES at it, or put it in front of the router.
#
# Environment: DS_BIN (default bin/durable-streams-server),
# DS_CLUSTER_MODE=loopback forces the fallback, DS_LONG_POLL_TIMEOUT
# (default 2s), DS_ROUTER_CADDYFILE / DS_NODE_CADDYFILE replace the shipped
# files (the conformance run uses a router with group_regexp).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${DS_BIN:-$root/bin/durable-streams-server}
[ -x "$bin" ] || { echo "topology.sh: binary not found: $bin (make build)" >&2; exit 2; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
node_caddyfile=${DS_NODE_CADDYFILE:-$root/examples/cluster/node.Caddyfile}
router_caddyfile=${DS_ROUTER_CADDYFILE:-$root/examples/cluster/router.Caddyfile}
node_port=8080
admin_port=2019

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# GET /health over bash's /dev/tcp (no curl needed); true on HTTP 200.
health_ok() { # host port
  local line
  { exec 3<>"/dev/tcp/$1/$2"; } 2>/dev/null || return 1
  printf 'GET /health HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$1" "$2" >&3 || { exec 3<&-; return 1; }
  IFS= read -r -t 2 line <&3 || line=""
  exec 3<&-
  [[ $line == "HTTP/1."?" 200"* ]]
}

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && ! grep -q '^[^)]*) Z' "/proc/$1/stat" 2>/dev/null; }

wait_health() { # host port what pid
  local end=$((SECONDS + 600))  # recovery of a large data_dir takes a while
  while [ $SECONDS -lt $end ]; do
    if ! alive "$4"; then echo "topology.sh: $3 exited during startup" >&2; return 1; fi
    if health_ok "$1" "$2"; then return 0; fi
    sleep 0.05
  done
  echo "topology.sh: $3 did not answer http://$1:$2/health within 600s" >&2
  return 1
}

netns_usable() {
  [ "${DS_CLUSTER_MODE:-}" != loopback ] || return 1
  [ "$(id -u)" = 0 ] && command -v ip >/dev/null || return 1
  local probe="dsprobe$$"
  ip netns add "$probe" 2>/dev/null || return 1
  ip netns del "$probe" 2>/dev/null || true
}

# Starts node i (its namespace and data_dir exist already).
start_node() {
  local dir=$1 i=$2
  # shellcheck disable=SC1091
  source "$dir/env"
  local addr_var="NODE${i}_ADDR" data_var="NODE${i}_DATA" ns_var="NODE${i}_NS"
  local addr=${!addr_var} data=${!data_var} ns=${!ns_var:-}
  local run=()
  [ -n "$ns" ] && run=(ip netns exec "$ns")
  (
    export DS_NODE_ADDR=$addr DS_NODE_PORT=$node_port DS_NODE_ADMIN=$addr:$admin_port \
      DS_DATA_DIR=$data DS_LONG_POLL_TIMEOUT=${DS_LONG_POLL_TIMEOUT:-2s} \
      HOME=$dir/home XDG_CONFIG_HOME=$dir/home/config XDG_DATA_HOME=$dir/home/data
    exec setsid "${run[@]}" "$bin" run --config "$node_caddyfile" --adapter caddyfile
  ) >>"$dir/node$i.log" 2>&1 </dev/null &
  echo $! >"$dir/node$i.pid"
  wait_health "$addr" "$node_port" "node $i" "$!"
}

cmd_up() {
  local dir=$1 n=${2:-3}
  mkdir -p "$dir/home"
  dir=$(cd "$dir" && pwd)
  local mode=loopback tag=$((RANDOM % 200 + 20)) sub=$((RANDOM % 250 + 1))
  netns_usable && mode=netns
  local router_port router_admin
  router_port=$(free_port)
  router_admin=127.0.0.1:$(free_port)
  {
    echo "MODE=$mode"
    echo "NODES=$n"
    echo "ROUTER_URL=http://127.0.0.1:$router_port"
    echo "ROUTER_ADMIN=http://$router_admin"
    echo "PINS_FILE=$dir/pins.txt"
  } >"$dir/env"
  : >"$dir/pins.txt"
  local upstreams=()
  for i in $(seq 1 "$n"); do
    local addr ns=""
    if [ $mode = netns ]; then
      # Host side 10.<tag>.<sub+i>.1, node side .2: a /30 per node.
      local net="10.$tag.$(((sub + i) % 256))"
      ns="ds$tag-$sub-n$i"
      local host_if="dsh$tag-$sub-$i" node_if="dsn$tag-$sub-$i"
      host_if=${host_if:0:15}
      node_if=${node_if:0:15}
      ip netns add "$ns"
      echo "$ns" >>"$dir/namespaces"
      ip link add "$host_if" type veth peer name "$node_if"
      ip link set "$node_if" netns "$ns"
      ip addr add "$net.1/30" dev "$host_if"
      ip link set "$host_if" up
      ip netns exec "$ns" ip link set lo up
      ip netns exec "$ns" ip addr add "$net.2/30" dev "$node_if"
      ip netns exec "$ns" ip link set "$node_if" up
      addr="$net.2"
    else
      addr="127.$tag.$sub.$i"
    fi
    mkdir -p "$dir/node$i-data"
    {
      echo "NODE${i}_NS=$ns"
      echo "NODE${i}_ADDR=$addr"
      echo "NODE${i}_URL=http://$addr:$node_port"
      echo "NODE${i}_ADMIN=http://$addr:$admin_port"
      echo "NODE${i}_UPSTREAM=$addr:$node_port"
      echo "NODE${i}_DATA=$dir/node$i-data"
    } >>"$dir/env"
    upstreams+=("$addr:$node_port")
  done
  for i in $(seq 1 "$n"); do start_node "$dir" "$i"; done
  (
    export DS_ROUTER_ADDR=127.0.0.1 DS_ROUTER_PORT=$router_port DS_ROUTER_ADMIN=$router_admin \
      DS_NODES="${upstreams[*]}" DS_PINS_FILE=$dir/pins.txt \
      HOME=$dir/home XDG_CONFIG_HOME=$dir/home/config XDG_DATA_HOME=$dir/home/data
    exec setsid "$bin" run --config "$router_caddyfile" --adapter caddyfile
  ) >>"$dir/router.log" 2>&1 </dev/null &
  echo $! >"$dir/router.pid"
  wait_health 127.0.0.1 "$router_port" router "$!"
  echo "topology.sh: $n nodes ($mode) and a router at http://127.0.0.1:$router_port; see $dir/env"
}

stop_pid() { # pidfile signal
  [ -f "$1" ] || return 0
  local pid
  pid=$(cat "$1")
  if alive "$pid"; then
    kill -"$2" "$pid" 2>/dev/null || true
    local end=$((SECONDS + 10))
    while alive "$pid" && [ $SECONDS -lt $end ]; do sleep 0.05; done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

cmd_kill() { stop_pid "$1/node$2.pid" KILL; }
cmd_start() { start_node "$1" "$2"; }

cmd_down() {
  local dir=$1
  [ -d "$dir" ] || return 0
  stop_pid "$dir/router.pid" TERM
  for f in "$dir"/node*.pid; do [ -e "$f" ] && stop_pid "$f" TERM; done
  if [ -f "$dir/namespaces" ]; then
    # Deleting a namespace deletes its end of the veth pair, and so the pair.
    while read -r ns; do ip netns del "$ns" 2>/dev/null || true; done <"$dir/namespaces"
    rm -f "$dir/namespaces"
  fi
}

cmd_run() {
  local dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/ds-cluster.XXXXXX")
  trap 'cmd_down "$dir"; rm -rf "$dir"' EXIT
  trap 'exit 130' INT TERM
  cmd_up "$dir" "${1:-3}"
  cat "$dir/env"
  echo "topology.sh: Ctrl-C stops everything"
  while alive "$(cat "$dir/router.pid")"; do sleep 1; done
}

case ${1:-} in
  up) shift; [ $# -ge 1 ] || exit 2; trap 'rc=$?; [ $rc = 0 ] || cmd_down "$1"' EXIT; cmd_up "$@" ;;
  kill) shift; cmd_kill "$@" ;;
  start) shift; cmd_start "$@" ;;
  down) shift; cmd_down "$@" ;;
  run) shift; cmd_run "$@" ;;
  *) sed -n '2,24p' "$0" >&2; exit 2 ;;
esac
