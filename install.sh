#!/bin/sh
# Installs durable-streams-server. POSIX sh: runs under dash, busybox sh, bash, zsh.
#
#   curl -sSL https://raw.githubusercontent.com/durable-streams-server/durable-streams-server/main/install.sh | sh
#   curl -sSL …/install.sh | sh -s -- --version 0.1.0 --prefix "$HOME/.local"
#   ./install.sh                 from an unpacked release tarball: installs the binary beside it
#
# Options:
#   --version V      release to install (default: the latest); "0.1.0" or "v0.1.0"
#   --prefix DIR     install DIR/bin/durable-streams-server (default /usr/local)
#   --systemd        also create the durable-streams user, /var/lib/durable-streams,
#                    /etc/durable-streams/Caddyfile (kept if present) and the systemd unit
#   --tarball FILE   install from a release tarball already downloaded (no checksum file)
#   --from-source    build from this checkout with Go and a C++ compiler (make build)
#   -h, --help       this text
#
# Environment:
#   DS_INSTALL_BASE_URL    where releases live (default GitHub's releases/download);
#                          files are at <base>/v<VERSION>/<file>
#   DS_INSTALL_LATEST_URL  where the latest release's SHA256SUMS is (default GitHub's
#                          releases/latest/download, or <base>/latest with a custom base)
#   DS_INSTALL_ROOT        prefix for the --systemd paths (/etc, /var/lib), for packaging
#
# Downloads are checked against the release's SHA256SUMS; a mismatch installs nothing.
set -eu

repo_url=https://github.com/durable-streams-server/durable-streams-server
name=durable-streams-server

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
	cat <<'EOF'
Usage: install.sh [--version V] [--prefix DIR] [--systemd] [--tarball FILE] [--from-source]

  curl -sSL https://raw.githubusercontent.com/durable-streams-server/durable-streams-server/main/install.sh | sh
  curl -sSL .../install.sh | sh -s -- --version 0.1.0 --prefix "$HOME/.local"
  ./install.sh            (in an unpacked release tarball: installs the binary beside it)

  --version V      release to install (default: the latest)
  --prefix DIR     install DIR/bin/durable-streams-server (default /usr/local)
  --systemd        also create the durable-streams user, /var/lib/durable-streams,
                   /etc/durable-streams/Caddyfile (kept if present) and the systemd unit
  --tarball FILE   install from a release tarball already downloaded
  --from-source    build from this checkout (needs Go and a C/C++ compiler)

Environment: DS_INSTALL_BASE_URL (mirror: <base>/v<VERSION>/<file>),
DS_INSTALL_LATEST_URL (default <base>/latest), DS_INSTALL_ROOT (for --systemd paths).
EOF
}

version=""
prefix=/usr/local
systemd=0
tarball=""
from_source=0
while [ $# -gt 0 ]; do
	case $1 in
	--version) [ $# -ge 2 ] || die "--version needs a value"; version=$2; shift 2 ;;
	--version=*) version=${1#*=}; shift ;;
	--prefix) [ $# -ge 2 ] || die "--prefix needs a value"; prefix=$2; shift 2 ;;
	--prefix=*) prefix=${1#*=}; shift ;;
	--tarball) [ $# -ge 2 ] || die "--tarball needs a value"; tarball=$2; shift 2 ;;
	--tarball=*) tarball=${1#*=}; shift ;;
	--systemd) systemd=1; shift ;;
	--from-source) from_source=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown option: $1" ;;
	esac
done
version=${version#v}
if [ "$systemd" = 1 ] && [ "$(uname -s)" != Linux ]; then
	die "--systemd is for Linux; on $(uname -s) install without it"
fi

# The directory this script was run from, if it was run as a file (not piped).
here=""
case $0 in
*install.sh) [ -f "$0" ] && here=$(cd "$(dirname "$0")" && pwd) ;;
esac

work=$(mktemp -d 2>/dev/null || mktemp -d -t ds-install)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

detect_platform() {
	case $(uname -s) in
	Linux) os=linux ;;
	Darwin) os=darwin ;;
	*) die "unsupported operating system: $(uname -s) (releases exist for Linux and macOS; on Windows download the .zip)" ;;
	esac
	case $(uname -m) in
	x86_64 | amd64) arch=amd64 ;;
	aarch64 | arm64 | armv8*) arch=arm64 ;;
	*) die "unsupported architecture: $(uname -m) (releases exist for amd64 and arm64)" ;;
	esac
}

fetch() { # fetch URL FILE
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL --retry 2 -o "$2" "$1" || die "download failed: $1"
	elif command -v wget >/dev/null 2>&1; then
		wget -q -O "$2" "$1" || die "download failed: $1"
	else
		die "neither curl nor wget is installed"
	fi
}

sha256() { # sha256 FILE: prints the hex digest
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | cut -d ' ' -f 1
	elif command -v shasum >/dev/null 2>&1; then
		shasum -a 256 "$1" | cut -d ' ' -f 1
	else
		die "neither sha256sum nor shasum is installed; cannot verify the download"
	fi
}

# download: sets $bin (and $pkgdir) from the release for $os/$arch.
download() {
	base=${DS_INSTALL_BASE_URL:-$repo_url/releases/download}
	base=${base%/}
	if [ -n "${DS_INSTALL_LATEST_URL:-}" ]; then
		latest=${DS_INSTALL_LATEST_URL%/}
	elif [ -n "${DS_INSTALL_BASE_URL:-}" ]; then
		latest=$base/latest
	else
		latest=$repo_url/releases/latest/download
	fi
	command -v sha256sum >/dev/null 2>&1 || command -v shasum >/dev/null 2>&1 ||
		die "neither sha256sum nor shasum is installed; cannot verify the download"
	if [ -z "$version" ]; then
		fetch "$latest/SHA256SUMS" "$work/latest-SHA256SUMS"
		version=$(sed -n "s/.*${name}_\(.*\)_${os}_${arch}\.tar\.gz\$/\1/p" "$work/latest-SHA256SUMS" | head -n 1)
		[ -n "$version" ] || die "the latest release ($latest/SHA256SUMS) has no ${os}_${arch} tarball"
		say "latest release is $version"
	fi
	file=${name}_${version}_${os}_${arch}.tar.gz
	url=$base/v$version
	say "downloading $url/$file"
	fetch "$url/SHA256SUMS" "$work/SHA256SUMS"
	fetch "$url/$file" "$work/$file"
	want=$(awk -v f="$file" '$2 == f || $2 == "*" f { print $1; exit }' "$work/SHA256SUMS")
	[ -n "$want" ] || die "$url/SHA256SUMS has no line for $file"
	got=$(sha256 "$work/$file")
	[ "$got" = "$want" ] || die "checksum mismatch for $file: SHA256SUMS says $want, the download is $got; nothing installed"
	say "checksum verified (sha256 $got)"
	unpack "$work/$file"
}

unpack() { # unpack TARBALL: sets $bin and $pkgdir
	mkdir "$work/x"
	tar -xzf "$1" -C "$work/x" || die "cannot unpack $1"
	bin=$(find "$work/x" -type f -name "$name" | head -n 1)
	[ -n "$bin" ] || die "no $name binary in $1"
	pkgdir=$(dirname "$bin")
}

installed_version() { # the version line of an installed binary, or nothing
	[ -x "$1" ] && "$1" version 2>/dev/null | head -n 1 || true
}

# 1. Find or make the binary to install.
pkgdir=""
if [ "$from_source" = 1 ]; then
	[ -n "$here" ] && [ -f "$here/go.mod" ] || die "--from-source runs ./install.sh inside a checkout"
	command -v go >/dev/null 2>&1 || die "--from-source needs Go (or install a release: drop --from-source)"
	say "building $name from $here"
	(cd "$here" && CGO_ENABLED=1 go build -trimpath -o "$work/$name" ./cmd/durable-streams-server) || die "build failed"
	bin=$work/$name
	pkgdir=$here
	how="built from $here"
elif [ -n "$tarball" ]; then
	[ -f "$tarball" ] || die "no such file: $tarball"
	unpack "$tarball"
	how="from $tarball"
elif [ -z "$version" ] && [ -n "$here" ] && [ -f "$here/$name" ]; then
	bin=$here/$name
	pkgdir=$here
	how="from $here"
else
	detect_platform
	download
	how="release $version for ${os}_${arch}, checksum verified"
fi
"$bin" version >/dev/null 2>&1 || die "$bin does not run on this machine ($(uname -s) $(uname -m))"

# 2. Install it: copy beside the target, then rename, so a running server's
# binary is replaced, not overwritten.
dest=$prefix/bin/$name
mkdir -p "$prefix/bin" 2>/dev/null || die "cannot create $prefix/bin (run as root, or use --prefix \$HOME/.local)"
[ -w "$prefix/bin" ] || die "$prefix/bin is not writable (run as root, or use --prefix \$HOME/.local)"
before=$(installed_version "$dest")
cp "$bin" "$dest.new.$$"
chmod 0755 "$dest.new.$$"
mv -f "$dest.new.$$" "$dest"
now=$("$dest" version | head -n 1)
if [ -z "$before" ]; then
	say "installed $dest ($how)"
elif [ "$before" = "$now" ]; then
	say "reinstalled $dest ($how)"
else
	say "upgraded $dest ($how)"
	say "  was: $before"
fi
say "  now: $now"
case :$PATH: in
*:"$prefix/bin":*) ;;
*) say "note: $prefix/bin is not on your PATH" ;;
esac

# 3. Optionally, the service: user, directories, config and unit.
if [ "$systemd" = 1 ]; then
	root=${DS_INSTALL_ROOT:-}
	[ -d "$pkgdir/packaging/systemd" ] || die "--systemd: no packaging/systemd beside the binary ($pkgdir)"
	if ! id durable-streams >/dev/null 2>&1; then
		if command -v useradd >/dev/null 2>&1; then
			useradd --system --user-group --home-dir /var/lib/durable-streams --no-create-home \
				--shell /usr/sbin/nologin durable-streams || die "cannot create user durable-streams"
		elif command -v adduser >/dev/null 2>&1; then
			addgroup -S durable-streams 2>/dev/null || true
			adduser -S -D -H -h /var/lib/durable-streams -s /sbin/nologin -G durable-streams durable-streams ||
				die "cannot create user durable-streams"
		else
			die "--systemd: neither useradd nor adduser is available to create user durable-streams"
		fi
		say "created system user durable-streams"
	fi
	mkdir -p "$root/var/lib/durable-streams" "$root/etc/durable-streams" "$root/etc/systemd/system"
	chown durable-streams:durable-streams "$root/var/lib/durable-streams"
	chmod 0750 "$root/var/lib/durable-streams"
	say "data directory $root/var/lib/durable-streams (owner durable-streams, 0750)"
	config=$root/etc/durable-streams/Caddyfile
	if [ -f "$config" ]; then
		say "kept the existing $config"
	else
		example=$pkgdir/packaging/systemd/Caddyfile
		[ -f "$example" ] || example=$pkgdir/Caddyfile.example
		[ -f "$example" ] || die "--systemd: no Caddyfile.example beside the binary ($pkgdir)"
		cp "$example" "$config"
		chmod 0644 "$config"
		say "wrote $config (from $(basename "$example"))"
	fi
	for unit in "$pkgdir"/packaging/systemd/*.service "$pkgdir"/packaging/systemd/*.socket "$pkgdir"/packaging/systemd/*.timer; do
		[ -f "$unit" ] || continue
		target=$root/etc/systemd/system/$(basename "$unit")
		sed "s#/usr/local/bin/$name#$dest#g" "$unit" >"$target"
		chmod 0644 "$target"
		say "wrote $target"
	done
	if [ -z "$root" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		systemctl daemon-reload
		say "systemd reloaded; start it with: systemctl enable --now durable-streams.socket durable-streams"
	else
		say "start it with: systemctl daemon-reload && systemctl enable --now durable-streams.socket durable-streams"
	fi
fi
