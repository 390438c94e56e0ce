#!/usr/bin/env bash
# Runs fetch_kernel.sh (downloading Debian's cloud kernel on first use) and checks its outputs.
set -euo pipefail

script="${TEST_SRCDIR:-.}/hvstack/tests/linux/fetch_kernel.sh"
[[ -f $script ]] || script="$(dirname "$0")/fetch_kernel.sh"
out=${TEST_TMPDIR:-$(mktemp -d)}/kernel
fail() { echo "FAIL: $*" >&2; exit 1; }

release=$("$script" "$out")
[[ $release =~ ^[0-9]+\.[0-9]+\.[0-9]+-[0-9]+-cloud-amd64$ ]] || fail "odd kernel release '$release'"
[[ $(cat "$out/kernel-release") == "$release" ]] || fail "kernel-release file disagrees"
file "$out/vmlinuz" | grep -q "Linux kernel x86 boot executable bzImage, version $release" ||
  fail "vmlinuz: $(file "$out/vmlinuz")"
file "$out/vmlinux" | grep -q "ELF 64-bit LSB executable, x86-64" || fail "vmlinux: $(file "$out/vmlinux")"
grep -q '^CONFIG_ACPI=y' "$out/config" || fail "config lacks CONFIG_ACPI=y"
[[ -f $out/modules/hv_vmbus.ko ]] || fail "no modules/hv_vmbus.ko"
# A second run is served from the cache.
[[ $("$script" "$out.again") == "$release" ]] || fail "second run differs"
cmp -s "$out/vmlinux" "$out.again/vmlinux" || fail "second run gave a different vmlinux"
echo "PASS: $release"
