#!/usr/bin/env bash
# Usage: fetch_package.sh PACKAGE OUT_DIR PATH...
#
# Fetches a Debian package with `apt-get download` (never installing it), unpacks it with
# `dpkg-deb -x` into a cache, and copies the listed paths (as they are inside the package, e.g.
# usr/sbin/hv_kvp_daemon) into OUT_DIR, flat (OUT_DIR/hv_kvp_daemon). Prints the package's
# version. For programs a test puts into a guest's initramfs (make_initramfs.sh --binary) that
# the host does not need installed, e.g. hyperv-daemons' hv_kvp_daemon.
#
# Cache: $HVSTACK_PACKAGE_CACHE; else, under `bazel test` (which points HOME at a per-test temp
# dir), /var/tmp/hvstack/packages; else $HOME/.cache/hvstack/packages. One directory per
# package and version. The only network use is `apt-get download`, and only when the cache
# lacks the version apt-cache names; offline, the newest cached version is used (with a
# warning).
set -euo pipefail

log() { echo "fetch_package: $*" >&2; }
die() { log "error: $*"; exit 1; }

(($# >= 3)) || die "usage: $0 PACKAGE OUT_DIR PATH..."
package=$1
out_dir=$2
shift 2
[[ $package =~ ^[a-z0-9][a-z0-9.+-]+(:[a-z0-9]+)?$ ]] || die "'$package' is not a Debian package name"
if [[ -n ${HVSTACK_PACKAGE_CACHE:-} ]]; then
  cache=$HVSTACK_PACKAGE_CACHE
elif [[ -n ${TEST_TMPDIR:-} ]]; then
  cache=/var/tmp/hvstack/packages
else
  cache=${HOME:-/root}/.cache/hvstack/packages
fi
for tool in apt-cache apt-get dpkg-deb flock; do
  command -v "$tool" >/dev/null || die "$tool not found (Debian's apt and dpkg)"
done
mkdir -p "$cache" "$out_dir"
name=${package%%:*}

entry=""
version=$(apt-cache policy "$package" 2>/dev/null | sed -n 's/^ *Candidate: //p')
if [[ -n $version && $version != "(none)" ]]; then
  entry="$cache/${name}_${version//:/%}"
  exec 9>"$entry.lock"
  flock 9
  if [[ ! -d $entry ]]; then
    log "downloading $package $version"
    dl=$(mktemp -d "$cache/download.XXXXXX")
    if (cd "$dl" && apt-get download -q "$package=$version" >"$dl/apt.log" 2>&1); then
      rm -rf "$entry.tmp"
      mkdir -p "$entry.tmp"
      dpkg-deb -x "$dl"/*.deb "$entry.tmp"
      mv "$entry.tmp" "$entry"
    else
      log "warning: apt-get download failed ($(tail -n 1 "$dl/apt.log")); trying the cache"
      entry=""
    fi
    rm -rf "$dl"
  fi
else
  log "warning: apt-cache knows no candidate for $package (no package lists?); trying the cache"
fi
if [[ -z $entry ]]; then
  entry=$(ls -d "$cache/${name}"_*/ 2>/dev/null | sed 's:/$::' | sort -V | tail -n 1 || true)
  [[ -n $entry ]] || die "no cached $package in $cache and none could be downloaded"
  log "using cached $(basename "$entry")"
fi

for path in "$@"; do
  path=${path#/}
  [[ -e $entry/$path ]] || die "$package ($(basename "$entry")) has no /$path"
  cp -L "$entry/$path" "$out_dir/$(basename "$path")"
done
basename "$entry" | sed "s/^${name}_//; s/%/:/g"
