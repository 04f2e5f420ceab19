#!/usr/bin/env bash
# Writes text-based stubs (.tbd, the format of Apple's SDK stubs) for the
# macOS frameworks and libraries the Go runtime and standard library link
# against (CoreFoundation, Security, libresolv), listing exactly the symbols
# Go imports from them (its //go:cgo_import_dynamic lines). zig ships stubs
# for libSystem only; these let it link a darwin binary without an SDK.
# At run time macOS's real frameworks provide the symbols.
#
#   tools/release/darwin-stubs.sh <out dir>    (-F <out dir> -L <out dir>)
set -euo pipefail
out=$1
src=$(${GO:-go} env GOROOT)/src
mkdir -p "$out"
imports=$(grep -rh '^//go:cgo_import_dynamic' --include='*.go' "$src" |
  awk '$4 ~ /Frameworks|libresolv/ {gsub(/"/, "", $4); print $4, $3}' | sort -u)
stub() { # install name, output file
  local syms
  syms=$(echo "$imports" | awk -v p="$1" '$1 == p {printf "%s_%s", sep, $2; sep=", "}')
  mkdir -p "$(dirname "$2")"
  cat >"$2" <<TBD
--- !tapi-tbd
tbd-version:     4
targets:         [ x86_64-macos, arm64-macos ]
install-name:    '$1'
exports:
  - targets:         [ x86_64-macos, arm64-macos ]
    symbols:         [ $syms ]
...
TBD
}
stub /System/Library/Frameworks/CoreFoundation.framework/Versions/A/CoreFoundation \
  "$out/CoreFoundation.framework/CoreFoundation.tbd"
stub /System/Library/Frameworks/Security.framework/Versions/A/Security \
  "$out/Security.framework/Security.tbd"
stub /usr/lib/libresolv.9.dylib "$out/libresolv.tbd"
