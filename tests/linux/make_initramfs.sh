#!/usr/bin/env bash
# Usage: make_initramfs.sh OUT_FILE [MARKER]
#
# Builds a tiny initramfs (cpio newc, gzip) around Debian's static busybox whose /init mounts
# /proc, /sys and /dev, prints MARKER (default HVSTACK-INITRAMFS-OK) on its own line on the
# console, and powers the machine off with `poweroff -f` (reboot(2) -> ACPI S5 -> the worker's
# PM1a control port). A boot test waits for the marker line and then for the VM to stop.
#
# Optional: HVSTACK_INITRAMFS_MODULES="a.ko b.ko" copies those kernel modules in and insmods
# them, in that order, before the marker (e.g. fetch_kernel.sh's modules/hv_vmbus.ko: Debian
# builds VMBus as a module).
#
# Needs busybox-static, cpio and gzip; not root. The output is reproducible: same inputs,
# same bytes.
set -euo pipefail

log() { echo "make_initramfs: $*" >&2; }
die() { log "error: $*"; exit 1; }

(($# == 1 || $# == 2)) || die "usage: $0 OUT_FILE [MARKER]"
out=$1
marker=${2:-HVSTACK-INITRAMFS-OK}
busybox=${HVSTACK_BUSYBOX:-/bin/busybox}
[[ $marker =~ ^[A-Za-z0-9._:=-]+$ ]] || die "MARKER must be [A-Za-z0-9._:=-]+ (it goes into /init)"

for tool in cpio gzip file; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
[[ -x $busybox ]] || die "$busybox not found (apt-get install busybox-static)"
# A dynamically linked busybox would need its libc inside the initramfs.
file -L "$busybox" | grep -q "statically linked" ||
  die "$busybox is not statically linked (apt-get install busybox-static)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,sbin,proc,sys,lib/modules,tmp}
cp "$busybox" "$root/bin/busybox"
# Applet links made here rather than by `busybox --install` at boot: every guest instruction
# counts on a software-emulated KVM.
for applet in $("$busybox" --list); do
  [[ $applet == busybox ]] || ln -sf busybox "$root/bin/$applet"
done

modules_script=""
for ko in ${HVSTACK_INITRAMFS_MODULES:-}; do
  [[ -f $ko ]] || die "module $ko not found"
  cp "$ko" "$root/lib/modules/"
  name=$(basename "$ko")
  modules_script+="insmod /lib/modules/$name || echo \"HVSTACK-INITRAMFS: insmod $name failed\"
"
done

cat >"$root/init" <<INIT
#!/bin/sh
# PID 1 of hvstack's test initramfs (tests/linux/make_initramfs.sh).
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
${modules_script}# A newline first, so the marker starts a line even after firmware or kernel output.
echo
echo "${marker}"
poweroff -f
# Only reached if the kernel could not power off (no ACPI S5): say so, and keep PID 1 alive,
# since its exit would be a kernel panic that hides the real problem.
echo "HVSTACK-INITRAMFS: poweroff failed"
while :; do sleep 3600; done
INIT
chmod 755 "$root/init"

# The kernel opens /dev/console for init's stdin/stdout/stderr before /init runs, so the archive
# needs that device node; without it the marker goes nowhere. mknod needs root, so write the
# /dev and /dev/console entries by hand (a newc header is ASCII hex) ahead of cpio's entries
# for everything else; one archive, one trailer.
newc_entry() {  # name mode rdevmajor rdevminor
  local name=$1 mode=$2 major=$3 minor=$4 namesize header pad
  namesize=$((${#name} + 1))
  header=$(printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
    0 "$mode" 0 0 1 0 0 0 0 "$major" "$minor" "$namesize" 0)
  printf '%s%s\0' "$header" "$name"
  # Header (110 bytes) + name + NUL, padded to a multiple of 4.
  pad=$(((4 - (110 + namesize) % 4) % 4))
  head -c "$pad" /dev/zero
}
{
  newc_entry dev $((0040755)) 0 0
  newc_entry dev/console $((0020600)) 5 1
} >"$work/nodes.cpio"

find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
  cpio --quiet -o -H newc --owner=0:0 --reproducible) >"$work/files.cpio"

mkdir -p "$(dirname "$out")"
cat "$work/nodes.cpio" "$work/files.cpio" | gzip -9 -n >"$out.tmp"
mv "$out.tmp" "$out"
log "$out: $(stat -c %s "$out") bytes, marker $marker${HVSTACK_INITRAMFS_MODULES:+, modules: $HVSTACK_INITRAMFS_MODULES}"
