#ifndef HVSTACK_HVCORE_BOOT_LAYOUT_H_
#define HVSTACK_HVCORE_BOOT_LAYOUT_H_

#include <cstdint>

// Fixed guest-physical addresses used when a VP is started directly in 64-bit
// long mode (Linux's 64-bit boot protocol, Documentation/x86/boot.rst). They
// all sit in the first 64 KiB, above the real-mode IVT/BDA (0x0-0x4ff), so any
// partition with at least 64 KiB of RAM can use them. The loader (vmwp) owns
// everything else: it must keep its own data out of [kBootGdtAddress,
// kBootReservedEnd) except for the zero page, which it places at
// kBootZeroPageAddress.
namespace hvcore {

// GDT: null, null, __BOOT_CS (0x10, 64-bit code), __BOOT_DS (0x18, data). 32
// bytes.
inline constexpr uint64_t kBootGdtAddress = 0x500;
inline constexpr uint16_t kBootCodeSelector = 0x10;
inline constexpr uint16_t kBootDataSelector = 0x18;
inline constexpr uint64_t kBootGdtEntries = 4;

// An empty IDT (limit 0) so that any exception during early boot triple-faults
// cleanly instead of vectoring through garbage. 16 bytes reserved.
inline constexpr uint64_t kBootIdtAddress = 0x520;

// Where the loader puts Linux's boot_params ("zero page", 4 KiB). Not written
// by hvcore; RSI points here at entry. 0x7000 is the address other VMMs (QEMU's
// PVH path, Firecracker) use too.
inline constexpr uint64_t kBootZeroPageAddress = 0x7000;
inline constexpr uint64_t kBootZeroPageSize = 0x1000;

// Identity page tables for the first 4 GiB with 2 MiB pages (1 GiB pages
// triple-fault on kvm_pvm hosts): one PML4 page, one PDPT page, four PD pages.
inline constexpr uint64_t kBootPml4Address = 0x9000;
inline constexpr uint64_t kBootPdptAddress = 0xA000;
inline constexpr uint64_t kBootPdAddress = 0xB000;  // 4 pages: 0xB000-0xEFFF
inline constexpr uint64_t kBootPdPages = 4;
inline constexpr uint64_t kBootIdentityMapBytes = 4ull << 30;

// End of the region hvcore may write (exclusive). [kBootZeroPageAddress + 4
// KiB, kBootPml4Address) and [kBootReservedEnd, ...) are free for the loader
// (e.g. the command line at 0x20000).
inline constexpr uint64_t kBootReservedEnd = 0xF000;

// KVM needs three pages of guest-physical space for the TSS (VMX real-mode
// emulation) and one for the identity map. Both live in the MMIO hole just
// below 4 GiB, where no RAM is ever mapped and no device we emulate sits (the
// IOAPIC is at 0xFEC00000, the LAPIC at 0xFEE00000).
inline constexpr uint64_t kKvmIdentityMapAddress = 0xFEFFC000;
inline constexpr uint64_t kKvmTssAddress = 0xFEFFD000;

// The MMIO hole: guest-physical [3 GiB, 4 GiB) never holds RAM (vid's
// GuestMemory puts RAM above 3 GiB at 4 GiB). Initial MTRRs make it
// uncacheable.
inline constexpr uint64_t kMmioHoleStart = 3ull << 30;
inline constexpr uint64_t kMmioHoleSize = 1ull << 30;

// KVM's in-kernel interrupt controllers (fixed by KVM; for the ACPI MADT): one
// IOAPIC with 24 pins and a LAPIC per VP with APIC id = VP index. hvcore
// installs PC-compatible GSI routing (as QEMU does): GSI n -> IOAPIC pin n and,
// for n < 16, PIC IRQ n; except GSI 0 (the in-kernel PIT) -> IOAPIC pin 2 and
// PIC IRQ 0, and GSI 2 (the PIC cascade) -> nothing. So the MADT carries the
// usual interrupt source override ISA IRQ 0 -> GSI 2, and a device on ISA
// IRQ n (n != 0, 2) or IOAPIC pin n >= 16 raises GSI n.
inline constexpr uint64_t kIoApicAddress = 0xFEC00000;
inline constexpr uint32_t kIoApicId = 0;  // KVM's IOAPIC reports id 0
inline constexpr uint32_t kIoApicPins = 24;
inline constexpr uint64_t kLocalApicAddress = 0xFEE00000;

// Guest-physical page the SMP test guest copies its real-mode AP trampoline
// to (SIPI vector 0x10); below 1 MiB, clear of the boot structures above and
// of the test command line at 0x20000. Loaders of real kernels need not care:
// Linux picks its own trampoline page from the e820 map.
inline constexpr uint64_t kTestApTrampolineAddress = 0x10000;

}  // namespace hvcore

#endif  // HVSTACK_HVCORE_BOOT_LAYOUT_H_
