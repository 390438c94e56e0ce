#!/usr/bin/env bash
# Builds hvstack's Linux test kernel from Debian's unmodified linux-source-6.1 package:
# `make tinyconfig`, then kernel/hvstack-test.config merged over it, then `make vmlinux`.
# Everything is built in. The result is cached outside the checkout, keyed by the source
# package's version, the config fragment and this recipe, so a machine builds each kernel once
# (~16 min on 2 cores) and every later call returns at once. Concurrent callers wait for one
# build (flock).
#
#   build_test_kernel.sh            prints the path of the cached vmlinux (building it first)
#   build_test_kernel.sh --key      prints the cache key only
#   build_test_kernel.sh --cached-only  prints the path if the kernel is built, else exits 3
#                                   (inside kvmbox, whose CPU is emulated: build on the host)
#
# Cache: $HVSTACK_TEST_KERNEL_CACHE, else /var/tmp/hvstack/test-kernel. Each key's directory
# holds vmlinux (PVH entry), config (the full .config), System.map, build.log, build_seconds and
# build_info (seconds, jobs, load average before and after: other work competes for the cores).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FRAGMENT="$HERE/kernel/hvstack-test.config"
TARBALL="${HVSTACK_LINUX_SOURCE:-/usr/src/linux-source-6.1.tar.xz}"
CACHE="${HVSTACK_TEST_KERNEL_CACHE:-/var/tmp/hvstack/test-kernel}"
# Bump when the steps below change in a way that changes the result.
RECIPE_VERSION=1

log() { echo "build_test_kernel: $*" >&2; }
die() { log "$*"; exit 1; }

[[ -f "$FRAGMENT" ]] || die "config fragment $FRAGMENT is missing"
if [[ ! -f "$TARBALL" ]]; then
  die "$TARBALL not found: install Debian's linux-source-6.1 package (deploy/install-deps.sh does)"
fi
for tool in make gcc bc bison flex xz flock; do
  command -v "$tool" >/dev/null || die "'$tool' not found: run deploy/install-deps.sh"
done
# objtool (built as part of an x86-64 kernel) needs libelf's headers.
[[ -f /usr/include/gelf.h ]] || die "libelf headers (gelf.h) not found: install libelf-dev (deploy/install-deps.sh does)"

if [[ -n "${HVSTACK_LINUX_SOURCE:-}" ]]; then
  source_version="tarball-$(stat -c %s-%Y "$TARBALL")"
else
  source_version=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || true)
  [[ -n "$source_version" ]] || source_version="tarball-$(stat -c %s-%Y "$TARBALL")"
fi
key_input=$(printf 'recipe %s\nsource %s\n' "$RECIPE_VERSION" "$source_version"; cat "$FRAGMENT")
key="6.1-${source_version//[^A-Za-z0-9.+-]/_}-$(printf '%s' "$key_input" | sha256sum | cut -c1-12)"
if [[ "${1:-}" == "--key" ]]; then
  echo "$key"
  exit 0
fi

dir="$CACHE/$key"
if [[ -f "$dir/vmlinux" ]]; then
  echo "$dir/vmlinux"
  exit 0
fi
if [[ "${1:-}" == "--cached-only" ]]; then
  log "the test kernel $key is not built yet (and --cached-only): run $0 on the host first"
  exit 3
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock-$key"
if ! flock -n 9; then
  log "another process is building $key; waiting for it"
  flock 9
fi
if [[ -f "$dir/vmlinux" ]]; then
  echo "$dir/vmlinux"
  exit 0
fi

# Leftovers of a build that was killed (the lock is ours now, so nobody is using them).
rm -rf "$CACHE/.build-$key".*
work=$(mktemp -d "$CACHE/.build-$key.XXXXXX")
trap 'rm -rf "$work"' EXIT
jobs=$(nproc)
start=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log "building the test kernel $key in $work with $jobs jobs (once per machine; ~16 min on 2 cores)"
tar -C "$work" -xf "$TARBALL"
src="$work/linux-source-6.1"
obj="$work/obj"
mkdir -p "$obj"
{
  make -C "$src" ARCH=x86_64 O="$obj" tinyconfig
  KCONFIG_CONFIG="$obj/.config" "$src/scripts/kconfig/merge_config.sh" -m -O "$obj" \
    "$obj/.config" "$FRAGMENT"
  make -C "$src" ARCH=x86_64 O="$obj" olddefconfig
} >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log" >&2; die "configuration failed"; }

# Every line of the fragment must have survived olddefconfig: an option whose dependencies are
# missing is dropped silently, and the kernel would lack a driver the tests rely on.
missing=()
while IFS= read -r line; do
  [[ "$line" =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]] || continue
  name="${BASH_REMATCH[1]}"
  want="${BASH_REMATCH[2]}"
  if [[ "$want" == "n" ]]; then
    grep -qx "$name=.*" "$obj/.config" && missing+=("$name=n (got $(grep -x "$name=.*" "$obj/.config"))")
  else
    grep -qxF "$name=$want" "$obj/.config" || missing+=("$name=$want")
  fi
done <"$FRAGMENT"
if ((${#missing[@]})); then
  die "olddefconfig dropped options of $FRAGMENT (missing dependencies?): ${missing[*]}"
fi

if ! make -C "$src" ARCH=x86_64 O="$obj" -j"$jobs" vmlinux >>"$work/build.log" 2>&1; then
  tail -n 40 "$work/build.log" >&2
  die "make vmlinux failed (full log above is the tail of $work/build.log)"
fi
seconds=$(($(date +%s) - start))

mkdir -p "$work/result"
cp "$obj/vmlinux" "$work/result/vmlinux"
cp "$obj/.config" "$work/result/config"
cp "$obj/System.map" "$work/result/System.map"
cp "$work/build.log" "$work/result/build.log"
echo "$seconds" >"$work/result/build_seconds"
# The machine's load says how much of that time was the build's: other work competes for cores.
printf 'seconds %s\njobs %s\ncpus %s\nloadavg_before %s\nloadavg_after %s\n' "$seconds" "$jobs" \
  "$(nproc)" "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg)" >"$work/result/build_info"
rm -rf "$dir"
mv "$work/result" "$dir"
log "built $key in ${seconds} s"
echo "$dir/vmlinux"
