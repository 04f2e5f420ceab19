#!/usr/bin/env bash
# Release archives, as the deployment guide names them, and their checksums:
#
#   tools/release/dist.sh [--no-build] <version> [<os>_<arch> ...]
#
# For each target (default: all five) builds the binary (tools/release/build.sh)
# and packs dist/durable-streams-server_<version>_<os>_<arch>.tar.gz (.zip for
# Windows) holding one directory of the same name: the binary, README.md,
# Caddyfile.example, install.sh, packaging/ and THIRD_PARTY_LICENSES (LMDB's
# and simdjson's, whose code the binary contains). Then writes
# dist/SHA256SUMS over every archive in dist/ and prints each binary's size.
# --no-build packs the binaries already in build/release/<os>_<arch>/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

build=1
if [ "${1:-}" = --no-build ]; then build=0; shift; fi

[ $# -ge 1 ] || { echo "usage: $0 <version> [<os>_<arch> ...]" >&2; exit 2; }
version=$1
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(linux_amd64 linux_arm64 darwin_amd64 darwin_arm64 windows_amd64)

mkdir -p dist
licenses=$(mktemp)
trap 'rm -f "$licenses"' EXIT
{
  echo "durable-streams-server contains LMDB and simdjson, compiled from native/third_party."
  echo
  echo "==== LMDB 0.9.24 (native/third_party/lmdb) ===="
  cat native/third_party/lmdb/COPYRIGHT
  echo
  cat native/third_party/lmdb/LICENSE
  echo
  echo "==== simdjson 3.0.1 (native/third_party/simdjson) ===="
  cat native/third_party/simdjson/LICENSE
} >"$licenses"

sizes=()
for target in "${targets[@]}"; do
  exe=durable-streams-server
  [ "${target%_*}" = windows ] && exe=$exe.exe
  bin=build/release/$target/$exe
  if [ $build = 1 ]; then tools/release/build.sh "$target" "$bin"; fi
  [ -x "$bin" ] || { echo "dist.sh: $bin missing" >&2; exit 1; }
  name=durable-streams-server_${version}_$target
  stage=build/release/stage/$name
  rm -rf "$stage"
  mkdir -p "$stage"
  cp "$bin" README.md Caddyfile.example install.sh "$stage/"
  cp -r packaging "$stage/"
  cp "$licenses" "$stage/THIRD_PARTY_LICENSES"
  rm -f "dist/$name.tar.gz" "dist/$name.zip"
  if [ "${target%_*}" = windows ]; then
    (cd build/release/stage && zip -qr -X "../../../dist/$name.zip" "$name")
    archive=dist/$name.zip
  else
    tar -C build/release/stage --owner=0 --group=0 -czf "dist/$name.tar.gz" "$name"
    archive=dist/$name.tar.gz
  fi
  rm -rf "$stage"
  sizes+=("$(printf '%-14s binary %6.1f MB  archive %6.1f MB  %s' "$target" \
    "$(echo "$(stat -c %s "$bin") / 1048576" | bc -l)" \
    "$(echo "$(stat -c %s "$archive") / 1048576" | bc -l)" "$archive")")
done

(
  cd dist
  shopt -s nullglob
  archives=(durable-streams-server_"$version"_*.tar.gz durable-streams-server_"$version"_*.zip)
  sha256sum -- "${archives[@]}" >SHA256SUMS
)
echo "dist/SHA256SUMS:"
cat dist/SHA256SUMS
printf '%s\n' "${sizes[@]}"
