#!/usr/bin/env bash
# Usage: make_initramfs.sh [OPTIONS] OUT_FILE [MARKER]
#
# Builds a tiny initramfs (cpio newc) for Linux guests. By default it holds Debian's static
# busybox and an /init script that mounts /proc, /sys and /dev, runs the --run commands, prints
# MARKER (default HVSTACK-INITRAMFS-OK) on its own line on the console, and powers the machine
# off with `poweroff -f` (reboot(2) -> ACPI S5 -> the worker's PM1a control port). A boot test
# waits for the marker line and then for the VM to stop.
#
# Options:
#   --uncompressed     write a plain cpio instead of gzip: the test kernel has no decompressor,
#                      and gunzip in an emulated guest kernel costs about a minute
#   --busybox FILE     a static busybox to use (default: $HVSTACK_BUSYBOX, else /bin/busybox).
#                      Any architecture the guest kernel runs, e.g. Debian's i386 busybox-static
#   --no-busybox       no busybox and no /init script: pass --init (or --file ...:init)
#   --init FILE        FILE (a static executable or a script for an interpreter in the archive)
#                      becomes /init instead of the generated script
#   --run COMMANDS     shell commands the generated /init runs before the marker (repeatable)
#   --file SRC:DEST    copies the host file SRC to DEST (relative, e.g. bin/hv_kvp_daemon),
#                      keeping its mode (repeatable)
#   --binary SRC[:DEST] a dynamically linked x86-64 program: copies it (to DEST, default
#                      bin/<name>) and every shared library `ldd` names, at the paths the host
#                      has them (the guest needs the same glibc layout: Debian 12's)
#
# Optional: HVSTACK_INITRAMFS_MODULES="a.ko b.ko" copies those kernel modules in and insmods
# them, in that order, before the marker (e.g. fetch_kernel.sh's modules/hv_vmbus.ko: Debian
# builds VMBus as a module).
#
# Needs cpio (and gzip, busybox-static unless told otherwise); not root. The output is
# reproducible: same inputs, same bytes.
set -euo pipefail

log() { echo "make_initramfs: $*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { die "usage: $0 [--uncompressed] [--busybox FILE|--no-busybox] [--init FILE] [--run CMDS]... [--file SRC:DEST]... [--binary SRC[:DEST]]... OUT_FILE [MARKER]"; }

compress=gzip
busybox=${HVSTACK_BUSYBOX:-/bin/busybox}
use_busybox=1
init_file=""
run_lines=()
files=()
binaries=()
positional=()
while (($#)); do
  case $1 in
    --uncompressed) compress=none ;;
    --busybox) (($# >= 2)) || usage; busybox=$2; shift ;;
    --no-busybox) use_busybox=0 ;;
    --init) (($# >= 2)) || usage; init_file=$2; shift ;;
    --run) (($# >= 2)) || usage; run_lines+=("$2"); shift ;;
    --file) (($# >= 2)) || usage; files+=("$2"); shift ;;
    --binary) (($# >= 2)) || usage; binaries+=("$2"); shift ;;
    --) shift; positional+=("$@"); break ;;
    -*) usage ;;
    *) positional+=("$1") ;;
  esac
  shift
done
((${#positional[@]} == 1 || ${#positional[@]} == 2)) || usage
out=${positional[0]}
marker=${positional[1]:-HVSTACK-INITRAMFS-OK}
[[ $marker =~ ^[A-Za-z0-9._:=-]+$ ]] || die "MARKER must be [A-Za-z0-9._:=-]+ (it goes into /init)"
if ((!use_busybox)) && [[ -z $init_file ]]; then
  printf '%s\n' "${files[@]}" | grep -q ':init$' || die "--no-busybox needs --init FILE (nothing would run)"
fi
if ((!use_busybox)) && ((${#run_lines[@]})); then
  die "--run needs the generated /init script (and busybox to run it)"
fi

tools=(cpio file)
[[ $compress == gzip ]] && tools+=(gzip)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
if ((use_busybox)); then
  [[ -x $busybox ]] || die "$busybox not found (apt-get install busybox-static)"
  # A dynamically linked busybox would need its libc inside the initramfs.
  file -L "$busybox" | grep -q "statically linked" ||
    die "$busybox is not statically linked (apt-get install busybox-static)"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,sbin,proc,sys,lib/modules,tmp}
if ((use_busybox)); then
  cp "$busybox" "$root/bin/busybox"
  # The applet links (bin/sh -> busybox ...) are written into the archive by hand below, without
  # a process per link (~400 of them: seconds here, minutes on an emulated CPU).
  applets=$("$busybox" --list) || die "$busybox --list failed: cannot run it on this host"
fi

for spec in "${files[@]}"; do
  src=${spec%%:*}
  dest=${spec#*:}
  [[ $spec == *:* && -n $src && -n $dest && $dest != /* && $dest != *..* ]] ||
    die "--file wants SRC:DEST with a relative DEST, got '$spec'"
  [[ -f $src ]] || die "--file: $src not found"
  mkdir -p "$root/$(dirname "$dest")"
  cp -p "$src" "$root/$dest"
done

for spec in "${binaries[@]}"; do
  src=${spec%%:*}
  dest=bin/$(basename "$src")
  [[ $spec == *:* ]] && dest=${spec#*:}
  [[ -n $src && $dest != /* && $dest != *..* ]] || die "--binary wants SRC[:DEST] with a relative DEST, got '$spec'"
  [[ -f $src ]] || die "--binary: $src not found"
  mkdir -p "$root/$(dirname "$dest")"
  cp -p "$src" "$root/$dest"
  # ldd prints "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and the loader as
  # "/lib64/ld-linux-x86-64.so.2 (0x...)"; a static program prints "not a dynamic executable".
  libs=$(ldd "$src" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (0x.*/\1/p') || true
  if ldd "$src" 2>&1 | grep -q "not found"; then
    die "--binary: $src needs libraries this host lacks: $(ldd "$src" 2>&1 | grep "not found" | tr -s ' \t\n' ' ')"
  fi
  for lib in $libs; do
    mkdir -p "$root/$(dirname "${lib#/}")"
    cp -L "$lib" "$root/${lib#/}"
  done
done

modules_script=""
for ko in ${HVSTACK_INITRAMFS_MODULES:-}; do
  [[ -f $ko ]] || die "module $ko not found"
  cp "$ko" "$root/lib/modules/"
  name=$(basename "$ko")
  modules_script+="insmod /lib/modules/$name || echo \"HVSTACK-INITRAMFS: insmod $name failed\"
"
done

if [[ -n $init_file ]]; then
  [[ -f $init_file ]] || die "--init: $init_file not found"
  cp "$init_file" "$root/init"
elif ((use_busybox)); then
  run_script=""
  for line in "${run_lines[@]}"; do run_script+="$line
"; done
  cat >"$root/init" <<INIT
#!/bin/sh
# PID 1 of hvstack's test initramfs (tests/linux/make_initramfs.sh).
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
${modules_script}${run_script}# A newline first, so the marker starts a line even after firmware or kernel output.
echo
echo "${marker}"
poweroff -f
# Only reached if the kernel could not power off (no ACPI S5): say so, and keep PID 1 alive,
# since its exit would be a kernel panic that hides the real problem.
echo "HVSTACK-INITRAMFS: poweroff failed"
while :; do sleep 3600; done
INIT
fi
[[ -f $root/init ]] && chmod 755 "$root/init"

# The kernel opens /dev/console for init's stdin/stdout/stderr before /init runs, so the archive
# needs that device node; without it the marker goes nowhere. mknod needs root, so write the
# /dev and /dev/console entries by hand (a newc header is ASCII hex) ahead of cpio's entries
# for everything else; one archive, one trailer.
# A symlink entry: NAME -> TARGET (its data is the target), with bash builtins only.
nul_pads=('' '\0' '\0\0' '\0\0\0')
newc_symlink() {  # name target
  local name=$1 target=$2 namesize header
  namesize=$((${#name} + 1))
  printf -v header '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
    0 $((0120777)) 0 0 1 0 "${#target}" 0 0 0 0 "$namesize" 0
  # Header (110 bytes) + name + NUL, padded to a multiple of 4; then the data, padded too.
  printf '%s%s\0' "$header" "$name"
  printf "${nul_pads[(4 - (110 + namesize) % 4) % 4]}"
  printf '%s' "$target"
  printf "${nul_pads[(4 - ${#target} % 4) % 4]}"
}
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
  if ((use_busybox)); then
    newc_entry bin $((0040755)) 0 0
    # Not over a file the archive has (--file, --binary): that one comes later and would be
    # written through the link into busybox.
    for applet in $applets; do
      [[ $applet == busybox || -e $root/bin/$applet || -L $root/bin/$applet ]] ||
        newc_symlink "bin/$applet" busybox
    done
  fi
} >"$work/nodes.cpio"

find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
  cpio --quiet -o -H newc --owner=0:0 --reproducible) >"$work/files.cpio"

mkdir -p "$(dirname "$out")"
if [[ $compress == gzip ]]; then
  cat "$work/nodes.cpio" "$work/files.cpio" | gzip -9 -n >"$out.tmp"
else
  cat "$work/nodes.cpio" "$work/files.cpio" >"$out.tmp"
fi
mv "$out.tmp" "$out"
log "$out: $(stat -c %s "$out") bytes ($compress), marker $marker${HVSTACK_INITRAMFS_MODULES:+, modules: $HVSTACK_INITRAMFS_MODULES}"
