#!/usr/bin/env bash
# Writes text-based stubs (.tbd, the format of Apple's SDK stubs) for the
# macOS frameworks and libraries the Go runtime and standard library link
# against (CoreFoundation, Security, libresolv), listing exactly the symbols
# Go imports from them (its //go:cgo_import_dynamic lines), plus every
# function and constant the stand-in framework headers in
# tools/release/darwin-include declare (what a dependency's cgo file calls).
# zig ships stubs for libSystem only; these let it link a darwin binary
# without an SDK. At run time macOS's real frameworks provide the symbols.
#
#   tools/release/darwin-stubs.sh <out dir>    (-F <out dir> -L <out dir>)
set -euo pipefail
out=$1
src=$(${GO:-go} env GOROOT)/src
mkdir -p "$out"
imports=$(grep -rh '^//go:cgo_import_dynamic' --include='*.go' "$src" |
  awk '$4 ~ /Frameworks|libresolv/ {gsub(/"/, "", $4); print $4, $3}' | sort -u)
include=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/darwin-include
# The names an `extern` declaration in a stand-in header declares: the word
# before the first "(" of a function, the last word of a constant.
declared() { # header
  sed -n 's/^extern [^(]*[ *]\([A-Za-z_][A-Za-z0-9_]*\)(.*/\1/p; s/^extern [^(]* \([A-Za-z_][A-Za-z0-9_]*\);$/\1/p' "$1"
}
cf=/System/Library/Frameworks/CoreFoundation.framework/Versions/A/CoreFoundation
sec=/System/Library/Frameworks/Security.framework/Versions/A/Security
imports=$(
  echo "$imports"
  declared "$include/CoreFoundation/CoreFoundation.h" | sed "s|^|$cf |"
  declared "$include/Security/Security.h" | sed "s|^|$sec |"
)
imports=$(echo "$imports" | sort -u)
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
stub "$cf" "$out/CoreFoundation.framework/CoreFoundation.tbd"
stub "$sec" "$out/Security.framework/Security.tbd"
stub /usr/lib/libresolv.9.dylib "$out/libresolv.tbd"
