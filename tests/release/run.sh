#!/usr/bin/env bash
# Tests every release archive in dist/ (make dist) where it can run here:
#
#   tests/release/run.sh [dist dir]        (make test-release)
#
#   SHA256SUMS     sha256sum -c over every archive
#   linux_amd64    static, stripped; serves a data_dir in an empty chroot (linux_static.sh)
#   linux_arm64    the same under qemu-aarch64-static, then the conformance suite
#                  (memory and data_dir) against it under qemu (RELEASE_CONFORMANCE=0 skips)
#   windows_amd64  under Wine: data_dir and memory round trips (windows.sh)
#   darwin_*       linked only: `file` must say Mach-O 64-bit of the right CPU,
#                  and LC_BUILD_VERSION must say macOS with minos 12.0
#                  (machover/, a small debug/macho reader). Nothing here can
#                  run a macOS binary.
# A target whose archive is missing, or whose tool (qemu, wine) is missing,
# is reported as SKIPPED, never as passed.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
dist=$(cd "${1:-$root/dist}" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ds-release-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

results=() failed=0
note() { results+=("$(printf '  %-16s %-8s %s' "$1" "$2" "${3:-}")"); [ "$2" = FAILED ] && failed=1; return 0; }

if (cd "$dist" && sha256sum -c SHA256SUMS); then note SHA256SUMS ok; else note SHA256SUMS FAILED; fi

unpack() { # target -> prints the binary's path, or nothing
  local a
  a=$(ls "$dist"/durable-streams-server_*_"$1".tar.gz "$dist"/durable-streams-server_*_"$1".zip 2>/dev/null | head -1)
  [ -n "$a" ] || return 0
  mkdir -p "$tmp/$1"
  case $a in *.zip) unzip -q "$a" -d "$tmp/$1" ;; *) tar -C "$tmp/$1" -xzf "$a" ;; esac
  find "$tmp/$1" -maxdepth 2 -type f -name 'durable-streams-server*' ! -name '*.sh' | head -1
}

bin=$(unpack linux_amd64)
if [ -z "$bin" ]; then note linux_amd64 SKIPPED "no archive"
elif "$here/linux_static.sh" "$bin"; then note linux_amd64 ok "static; empty chroot, data_dir, restart"
else note linux_amd64 FAILED; fi

bin=$(unpack linux_arm64)
if [ -z "$bin" ]; then note linux_arm64 SKIPPED "no archive"
elif ! command -v qemu-aarch64-static >/dev/null; then note linux_arm64 SKIPPED "no qemu-aarch64-static"
else
  if "$here/linux_static.sh" "$bin" qemu-aarch64-static; then note linux_arm64 ok "static; empty chroot under qemu"
  else note linux_arm64 FAILED "chroot under qemu"; fi
  if [ "${RELEASE_CONFORMANCE:-1}" = 1 ]; then
    for mode in memory data_dir; do
      if DS_CONFORMANCE_RUNNER=qemu-aarch64-static DS_CONFORMANCE_HEALTH_S=120 \
        "$root/tests/conformance/run.sh" "$bin" "$mode" 2>&1 | tee "$tmp/conf-$mode.log" | tail -3; then
        note "linux_arm64" ok "conformance under qemu ($mode): $(tail -1 "$tmp/conf-$mode.log")"
      else
        note "linux_arm64" FAILED "conformance under qemu ($mode): $(tail -1 "$tmp/conf-$mode.log")"
      fi
    done
  fi
fi

machover=$tmp/machover
(cd "$root" && ${GO:-go} build -o "$machover" ./tests/release/machover) || machover=""
for t in darwin_amd64:x86_64 darwin_arm64:arm64; do
  target=${t%%:*} cpu=${t#*:}
  bin=$(unpack "$target")
  if [ -z "$bin" ]; then note "$target" SKIPPED "no archive"; continue; fi
  desc=$(file -b "$bin")
  echo "$target: $desc"
  case $desc in "Mach-O 64-bit"*"$cpu"*executable*|"Mach-O 64-bit executable $cpu"*) ;;
    *) note "$target" FAILED "file: $desc"; continue ;; esac
  # The oldest macOS it declares it runs on: 12 (what README promises).
  if [ -z "$machover" ]; then note "$target" FAILED "could not build tests/release/machover"; continue; fi
  version=$("$machover" "$bin" 2>&1)
  echo "$target: $version"
  case $version in "darwin $cpu minos 12.0 "*) note "$target" ok "linked: $desc; $version (not run: no macOS here)" ;;
    *) note "$target" FAILED "LC_BUILD_VERSION: $version (want darwin $cpu minos 12.0)" ;; esac
done

bin=$(unpack windows_amd64)
if [ -z "$bin" ]; then note windows_amd64 SKIPPED "no archive"
elif ! command -v wine >/dev/null && ! command -v wine64 >/dev/null; then note windows_amd64 SKIPPED "no wine"
elif "$here/windows.sh" "$bin"; then note windows_amd64 ok "under Wine: data_dir + memory round trips, restart"
else note windows_amd64 FAILED; fi

echo
echo "==== release artifacts ===="
printf '%s\n' "${results[@]}"
exit $failed
