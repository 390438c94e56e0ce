#!/usr/bin/env bash
# Usage: fetch_kernel.sh OUT_DIR
#
# Fetches Debian's current cloud kernel (the image package that linux-image-cloud-amd64 depends
# on) with apt-get, never installing it, and leaves in OUT_DIR:
#   vmlinuz          the bzImage, as Debian ships it
#   vmlinux          the uncompressed ELF kernel inside it (what the worker's loader takes)
#   config           the kernel's build configuration
#   modules/         hv_vmbus.ko and hv_utils.ko (CONFIG_HYPERV=m in Debian's cloud kernel),
#                    evdev.ko and button.ko (the ACPI power button as /dev/input/event*)
#   kernel-release   e.g. "6.1.0-56-cloud-amd64"
# and prints the kernel release on stdout (progress goes to stderr).
#
# Cache: $HVSTACK_KERNEL_CACHE; else, under `bazel test` (which points HOME at a per-test temp
# dir), /var/tmp/hvstack/kernel; else $HOME/.cache/hvstack/kernel. The only network use is
# `apt-get download`, and only when the cache lacks the version apt-cache names; offline, the
# newest cached kernel is used instead (with a warning).
set -euo pipefail

log() { echo "fetch_kernel: $*" >&2; }
die() { log "error: $*"; exit 1; }

(($# == 1)) || die "usage: $0 OUT_DIR"
out_dir=$1
if [[ -n ${HVSTACK_KERNEL_CACHE:-} ]]; then
  cache=$HVSTACK_KERNEL_CACHE
elif [[ -n ${TEST_TMPDIR:-} ]]; then
  cache=/var/tmp/hvstack/kernel  # survives between test runs, unlike $HOME there
else
  cache=${HOME:-/root}/.cache/hvstack/kernel
fi
meta_package=linux-image-cloud-amd64
hv_modules=(kernel/drivers/hv/hv_vmbus.ko kernel/drivers/hv/hv_utils.ko
  # The ACPI power button as an input device (make_initramfs.sh's power-button wait).
  kernel/drivers/input/evdev.ko kernel/drivers/acpi/button.ko)

for tool in apt-cache apt-get dpkg-deb grep tail od readelf; do
  command -v "$tool" >/dev/null || die "$tool not found (Debian's apt, dpkg and binutils)"
done
mkdir -p "$cache" "$out_dir"

# The image package's name carries the kernel ABI (linux-image-6.1.0-56-cloud-amd64) and changes
# with every ABI bump, so ask apt which one the meta-package wants today. apt-cache reads the
# local package lists and works offline.
resolve_package() {
  apt-cache depends "$meta_package" 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n 1
}

# Unpacks one .deb into $cache/<package>_<version>/ (a tree, not an install) and records it.
unpack() {
  local deb=$1 dir=$2
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp"
  dpkg-deb -x "$deb" "$dir.tmp/root"
  mv "$dir.tmp" "$dir"
}

package=$(resolve_package || true)
entry=""
if [[ -n $package ]]; then
  version=$(apt-cache policy "$package" | sed -n 's/^ *Candidate: //p')
  [[ -n $version && $version != "(none)" ]] || die "apt-cache has no candidate for $package"
  entry="$cache/${package}_${version}"
  if [[ ! -d $entry ]]; then
    log "downloading $package $version"
    dl=$(mktemp -d "$cache/download.XXXXXX")
    if (cd "$dl" && apt-get download -q "$package=$version" >&2 2>"$dl/apt.log"); then
      unpack "$dl"/*.deb "$entry"
    else
      log "warning: apt-get download failed ($(tail -n 1 "$dl/apt.log")); trying the cache"
      entry=""
    fi
    rm -rf "$dl"
  fi
else
  log "warning: apt-cache does not know $meta_package (no package lists?); trying the cache"
fi
if [[ -z $entry ]]; then
  # Offline fallback: the newest kernel already unpacked.
  entry=$(ls -d "$cache"/linux-image-*_*/ 2>/dev/null | sed 's:/$::' | sort -V | tail -n 1 || true)
  [[ -n $entry ]] || die "no cached kernel in $cache and none could be downloaded"
  log "using cached $(basename "$entry")"
fi

root="$entry/root"
vmlinuz=$(ls "$root"/boot/vmlinuz-* 2>/dev/null | head -n 1)
[[ -f $vmlinuz ]] || die "no /boot/vmlinuz-* in $(basename "$entry")"
release=${vmlinuz##*/vmlinuz-}

is_complete_elf() {
  # ELF magic, and the section header table (at the end of the file) inside the file: a
  # decompressor that stopped early fails this.
  [[ $(od -An -tx1 -N4 "$1" | tr -d ' \n') == 7f454c46 ]] || return 1
  local shoff shnum shentsize size
  shoff=$(readelf -h "$1" | sed -n 's/^ *Start of section headers: *\([0-9]*\).*/\1/p')
  shnum=$(readelf -h "$1" | sed -n 's/^ *Number of section headers: *\([0-9]*\).*/\1/p')
  shentsize=$(readelf -h "$1" | sed -n 's/^ *Size of section headers: *\([0-9]*\).*/\1/p')
  size=$(stat -c %s "$1")
  [[ -n $shoff && -n $shnum && -n $shentsize ]] && ((shoff + shnum * shentsize <= size))
}

# The bzImage's payload is the compressed vmlinux, somewhere after the real-mode setup and the
# decompressor stub. Like Linux's scripts/extract-vmlinux: look for each format's magic bytes
# and decompress from every hit until the result is an ELF file. Debian's 6.1 cloud kernel uses
# LZ4 (CONFIG_KERNEL_LZ4=y, legacy LZ4 frames, magic 02 21 4C 18); the others are here so a
# future change of Debian's choice does not break us. Decompressors exit non-zero on the
# trailing bytes after the payload, so only the ELF check counts.
extract_vmlinux() {
  local image=$1 out=$2 config=$3
  local formats=(
    "lz4|\\x02\\x21\\x4c\\x18|lz4 -dc"
    "zstd|\\x28\\xb5\\x2f\\xfd|zstd -dcq"
    "xz|\\xfd\\x37\\x7a\\x58\\x5a\\x00|xz -dcq"
    "gzip|\\x1f\\x8b\\x08|gzip -dcq"
    "bzip2|BZh|bzip2 -dcq"
    "lzma|\\x5d\\x00\\x00\\x00|xz -dcq --format=lzma"
    "lzo|\\x89\\x4c\\x5a|lzop -dcq"
  )
  # Try the configured compression first.
  local configured
  configured=$(sed -n 's/^CONFIG_KERNEL_\([A-Z0-9]*\)=y$/\1/p' "$config" | tr 'A-Z' 'a-z')
  local entry name magic cmd offset
  for pass in configured others; do
    for entry in "${formats[@]}"; do
      IFS='|' read -r name magic cmd <<<"$entry"
      # First pass: only the configured format; second pass: every other one.
      if [[ $pass == configured && $name != "$configured" ]]; then continue; fi
      if [[ $pass == others && $name == "$configured" ]]; then continue; fi
      command -v "${cmd%% *}" >/dev/null || continue
      for offset in $(LC_ALL=C grep -obUaP "$magic" "$image" | cut -d: -f1); do
        tail -c "+$((offset + 1))" "$image" | $cmd >"$out.tmp" 2>/dev/null || true
        if is_complete_elf "$out.tmp"; then
          mv "$out.tmp" "$out"
          echo "$name"
          return 0
        fi
      done
    done
  done
  rm -f "$out.tmp"
  return 1
}

if [[ ! -f $entry/vmlinux ]]; then
  config="$root/boot/config-$release"
  compression=$(extract_vmlinux "$vmlinuz" "$entry/vmlinux" "$config") ||
    die "found no compressed ELF payload in $vmlinuz (CONFIG_KERNEL_*: $(grep -o '^CONFIG_KERNEL_[A-Z0-9]*=y' "$config" | tr '\n' ' '))"
  echo "$compression" >"$entry/compression"
  log "extracted vmlinux ($compression) from $(basename "$vmlinuz")"
fi

cp -f "$vmlinuz" "$out_dir/vmlinuz"
cp -f "$entry/vmlinux" "$out_dir/vmlinux"
cp -f "$root/boot/config-$release" "$out_dir/config"
mkdir -p "$out_dir/modules"
for m in "${hv_modules[@]}"; do
  [[ -f $root/lib/modules/$release/$m ]] && cp -f "$root/lib/modules/$release/$m" "$out_dir/modules/"
done
echo "$release" >"$out_dir/kernel-release"
# The whole unpacked package (every module), for tools that need more than the VMBus ones
# (tests/kvmbox boots this kernel with kvm-amd and virtiofs).
ln -sfn "$root" "$out_dir/root"
log "$(basename "$entry") ($(cat "$entry/compression")): $out_dir/vmlinuz, $out_dir/vmlinux"
echo "$release"
