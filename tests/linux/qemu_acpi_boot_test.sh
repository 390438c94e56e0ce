#!/usr/bin/env bash
# Boots Debian's cloud kernel with make_initramfs.sh's initramfs under QEMU (TCG, no KVM needed)
# with vmwp/acpi's tables in place of QEMU's own (loaded into RAM, found through acpi_rsdp=),
# and checks that Linux takes them: its table list, the MADT's CPUs and overrides, the PNP
# devices from our DSDT, and the S5 power-off through our \_S5 and FADT. QEMU's q35 has its
# PM1a blocks at 0x600/0x604 and its SCI on IRQ 9, as our defaults describe.
#
# Not the worker: a check of the tables against a real Linux until the worker can boot one.
# Needs qemu-system-x86 and, on first use, Debian's mirror (fetch_kernel.sh).
set -euo pipefail

here="${TEST_SRCDIR:-}/hvstack/tests/linux"
[[ -d $here ]] || here=$(dirname "$0")
tmp=${TEST_TMPDIR:-$(mktemp -d)}
fail() { echo "FAIL: $*" >&2; [[ -f $tmp/console.log ]] && tail -n 40 "$tmp/console.log" >&2; exit 1; }

qemu=$(command -v qemu-system-x86_64 || true)
if [[ -z $qemu ]]; then
  echo "SKIP: qemu-system-x86_64 not installed (apt-get install qemu-system-x86)"
  exit 0
fi

base=0x8000000  # 128 MiB: RAM Linux reserves once it finds the tables there
vcpus=2
"$here/fetch_kernel.sh" "$tmp/kernel" >/dev/null
"$here/make_initramfs.sh" "$tmp/initrd.gz" HVSTACK-ACPI-BOOT-OK
rsdp=$("$here/write_acpi_tables" "$tmp/acpi.bin" "$base" "$vcpus")

timeout 300 "$qemu" -machine q35 -accel tcg -smp "$vcpus" -m 512 -nographic -no-reboot \
  -kernel "$tmp/kernel/vmlinux" -initrd "$tmp/initrd.gz" \
  -device "loader,file=$tmp/acpi.bin,addr=$base,force-raw=on" \
  -append "console=ttyS0 panic=-1 acpi_rsdp=$rsdp" >"$tmp/console.log" 2>&1 ||
  fail "QEMU exited with $? (timeout: the guest did not power off)"

expect() { grep -qF -- "$1" "$tmp/console.log" || fail "console lacks: $1"; }
expect "ACPI: RSDP 0x0000000008000000 000024 (v02 HVSTCK)"
for table in XSDT FACP DSDT APIC; do expect "ACPI: $table 0x"; done
expect "ACPI: INT_SRC_OVR (bus 0 bus_irq 9 global_irq 9 high level)"
expect "smpboot: Allowing $vcpus CPUs"
expect "ACPI: PM: (supports S0 S5)"
expect "pnp: PnP ACPI: found 3 devices"
expect "ttyS0 at I/O 0x3f8 (irq = 4"
expect "i8042: PNP: PS/2 Controller [PNP0303:KBD] at 0x60,0x64 irq 1"
expect "rtc_cmos 00:02: registered as rtc0"
grep -qx "HVSTACK-ACPI-BOOT-OK" <(tr -d '\r' <"$tmp/console.log") || fail "no marker line"
expect "ACPI: PM: Preparing to enter system sleep state S5"
if grep -E "ACPI (Error|BIOS Error|Warning)|ACPI BIOS Warning" "$tmp/console.log"; then
  fail "Linux complained about the tables"
fi
echo "PASS: $(grep -o -m1 'Linux version [^ ]*' "$tmp/console.log")"
