#!/usr/bin/env bash
# Builds one self-contained release binary of durable-streams-server.
#
#   tools/release/build.sh <os>_<arch> <output path>
#
# Targets and toolchains:
#   linux_amd64    the host's gcc/g++, glibc, libstdc++ and libgcc all static
#   linux_arm64    Debian's aarch64-linux-gnu-gcc/g++ (g++-aarch64-linux-gnu), static
#   darwin_amd64   zig cc -target x86_64-macos.12.0   (PyPI's ziglang package), linked
#                  against stubs of the frameworks Go imports (darwin-stubs.sh)
#   darwin_arm64   zig cc -target aarch64-macos.12.0
#   windows_amd64  zig cc -target x86_64-windows-gnu (mingw-w64 and libc++, static)
#
# Linux binaries are fully static (no ELF interpreter, no shared library) and
# use Go's own DNS resolver and user lookup (-tags netgo,osusergo), so they
# run on any distribution (glibc or musl) and in an empty container. glibc
# rather than musl keeps glibc's malloc, which the engine leans on. Every
# binary is stripped (-s -w). LMDB and simdjson are compiled from
# native/third_party by cgo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

[ $# -eq 2 ] || { echo "usage: $0 <os>_<arch> <output>" >&2; exit 2; }
target=$1 out=$2
goos=${target%_*} goarch=${target#*_}

# zig wrappers: Go runs $CC as one command, and zig wants a cache it can write.
zig_wrappers() { # zig target triple; sets CC and CXX
  local triple=$1 dir=build/release/toolchain
  local zig
  zig=$(python3 -c 'import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))' 2>/dev/null) || {
    echo "build.sh: $target needs zig: pip install ziglang" >&2; exit 1; }
  mkdir -p "$dir"
  local cache=${ZIG_CACHE:-$(pwd)/build/zig-cache}
  for tool in cc c++; do
    cat >"$dir/zig-$triple-$tool" <<WRAP
#!/bin/sh
# Written by tools/release/build.sh.
export ZIG_GLOBAL_CACHE_DIR="$cache" ZIG_LOCAL_CACHE_DIR="$cache"
exec "$zig" $tool -target $triple "\$@"
WRAP
    chmod +x "$dir/zig-$triple-$tool"
  done
  CC=$(pwd)/$dir/zig-$triple-cc CXX=$(pwd)/$dir/zig-$triple-c++
}

tags="" ldflags="-s -w"
case $target in
  linux_amd64)
    CC=${CC_LINUX_AMD64:-gcc} CXX=${CXX_LINUX_AMD64:-g++} ;;
  linux_arm64)
    CC=${CC_LINUX_ARM64:-aarch64-linux-gnu-gcc} CXX=${CXX_LINUX_ARM64:-aarch64-linux-gnu-g++}
    command -v "$CXX" >/dev/null || {
      echo "build.sh: $CXX not found: apt-get install g++-aarch64-linux-gnu" >&2; exit 1; } ;;
  darwin_amd64|darwin_arm64)
    # macOS 12 is the oldest Go 1.26 supports (zig would default to its newest).
    [ "$goarch" = amd64 ] && zig_wrappers x86_64-macos.12.0 || zig_wrappers aarch64-macos.12.0
    # zig's macOS headers lack <mach/mach_vm.h>, which a dependency's cgo
    # file includes; tools/release/darwin-include declares what it uses.
    export CGO_CFLAGS="${CGO_CFLAGS:--O2} -I$(pwd)/tools/release/darwin-include"
    # ... and no macOS frameworks: stubs of the symbols Go imports from them.
    stubs=$(pwd)/build/release/darwin-stubs
    tools/release/darwin-stubs.sh "$stubs"
    ldflags="$ldflags -extldflags '-F $stubs -L $stubs'" ;;
  windows_amd64) zig_wrappers x86_64-windows-gnu ;;
  *) echo "build.sh: unknown target $target" >&2; exit 2 ;;
esac
case $goos in
  linux)
    tags=netgo,osusergo
    ldflags="$ldflags -linkmode external -extldflags -static" ;;
esac

export CGO_ENABLED=1 GOOS=$goos GOARCH=$goarch CC CXX
mkdir -p "$(dirname "$out")"
echo "build.sh: $target with CC=$CC CXX=$CXX" >&2
${GO:-go} build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$out" ./cmd/durable-streams-server
# zig leaves empty a.out / -.o files behind from Go's compiler-flag probes.
for f in a.out -.o; do [ -f "$f" ] && [ ! -s "$f" ] && rm -f -- "$f"; done
exit 0
