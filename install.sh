#!/usr/bin/env bash
# Installs durable-streams-server.
#
#   ./install.sh                       build from this checkout, install to /usr/local/bin
#   ./install.sh --tarball FILE        install the binary from a release tarball instead
#   ./install.sh --prefix DIR          install to DIR/bin (default /usr/local)
#   ./install.sh --systemd             also create the durable-streams user, /var/lib/durable-streams,
#                                      /etc/durable-streams/Caddyfile and the systemd unit
#
# Building needs Go, a C++20 compiler, liblmdb-dev and libsimdjson-dev (on Debian/Ubuntu
# run with --deps to apt-get them). Nothing is downloaded except Go modules, which come
# from the module cache when present. The binary needs liblmdb and libsimdjson at run time.
set -euo pipefail

prefix=/usr/local
tarball=""
systemd=0
deps=0
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) prefix=$2; shift 2 ;;
    --tarball) tarball=$2; shift 2 ;;
    --systemd) systemd=1; shift ;;
    --deps) deps=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ "$deps" = 1 ]; then
  apt-get update
  apt-get install -y --no-install-recommends g++ liblmdb-dev libsimdjson-dev
fi

if [ -n "$tarball" ]; then
  tar -xzf "$tarball" -C "$work"
  bin=$(find "$work" -type f -name durable-streams-server | head -n 1)
  [ -n "$bin" ] || { echo "install.sh: no durable-streams-server binary in $tarball" >&2; exit 1; }
else
  command -v go >/dev/null || { echo "install.sh: Go is required to build (or use --tarball)" >&2; exit 1; }
  echo "Building durable-streams-server from $here ..."
  (cd "$here" && CGO_ENABLED=1 go build -trimpath -o "$work/durable-streams-server" ./cmd/durable-streams-server)
  bin=$work/durable-streams-server
fi

install -d "$prefix/bin"
install -m 0755 "$bin" "$prefix/bin/durable-streams-server"
echo "Installed $prefix/bin/durable-streams-server"
"$prefix/bin/durable-streams-server" version

if [ "$systemd" = 1 ]; then
  id durable-streams >/dev/null 2>&1 ||
    useradd --system --home /var/lib/durable-streams --shell /usr/sbin/nologin durable-streams
  install -d -o durable-streams -g durable-streams -m 0750 /var/lib/durable-streams
  install -d -m 0755 /etc/durable-streams
  if [ ! -f /etc/durable-streams/Caddyfile ]; then
    install -m 0644 "$here/Caddyfile.example" /etc/durable-streams/Caddyfile
  fi
  sed "s#/usr/local/bin/durable-streams-server#$prefix/bin/durable-streams-server#" \
    "$here/packaging/systemd/durable-streams.service" > /etc/systemd/system/durable-streams.service
  install -m 0644 "$here/packaging/systemd/durable-streams.socket" /etc/systemd/system/durable-streams.socket
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    echo "Start it with: systemctl enable --now durable-streams.socket durable-streams"
  fi
fi
