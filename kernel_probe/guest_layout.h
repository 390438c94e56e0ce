#ifndef HVSTACK_KERNEL_PROBE_GUEST_LAYOUT_H_
#define HVSTACK_KERNEL_PROBE_GUEST_LAYOUT_H_

#include <cstdint>
#include <string_view>
#include <vector>

// The guest-physical layout the loader works with, as plain constants so that
// the cheap probe (used by vmms) needs neither vid nor hvcore. loader_test
// checks them against vid::GuestMemory and hvcore/boot_layout.h.
namespace kernel_probe {

// RAM: [0, min(size, 3 GiB)) and, above that, [4 GiB, 4 GiB + size - 3 GiB).
// [3, 4) GiB is the MMIO hole. vid::GuestMemory accepts at most 1 TiB.
inline constexpr uint64_t kLowRamEnd = 3ull << 30;
inline constexpr uint64_t kHighRamStart = 4ull << 30;
inline constexpr uint64_t kMaxGuestMemoryBytes = 1ull << 40;
inline constexpr uint64_t kMaxGuestPhysicalEnd =
    kHighRamStart + kMaxGuestMemoryBytes - kLowRamEnd;

// Boot structures in low memory. hvcore writes the GDT, IDT and page tables in
// [0x500, 0xF000) and the zero page is expected at 0x7000
// (hvcore/boot_layout.h); the command line goes in a page of its own at
// 0x20000, as other VMMs place it.
inline constexpr uint64_t kZeroPageAddress = 0x7000;
inline constexpr uint64_t kZeroPageSize = 0x1000;
inline constexpr uint64_t kBootStructuresEnd =
    0xF000;  // hvcore::kBootReservedEnd
inline constexpr uint64_t kCmdlineAddress = 0x20000;
inline constexpr uint64_t kCmdlineAreaSize = 0x1000;
// The longest command line we pass, excluding its NUL. Linux/x86 keeps 2048
// bytes (COMMAND_LINE_SIZE); a longer one is an error here rather than silently
// truncated there.
inline constexpr uint64_t kMaxCmdlineBytes = 2047;
// The legacy BIOS area (EBDA, VGA, option ROMs), reported reserved as on a PC:
// Linux treats it specially no matter what, and reports "RAM" there as a
// firmware bug.
inline constexpr uint64_t kLegacyHoleStart = 0x9FC00;
inline constexpr uint64_t kLegacyHoleEnd = 0x100000;

struct GpaRange {
  uint64_t start;
  uint64_t end;  // exclusive
  std::string_view what;
};

// Regions a kernel image may not be loaded into: the boot structures and the
// command line.
inline constexpr GpaRange kLoaderReservedRanges[] = {
    {0, kBootStructuresEnd, "boot page tables/GDT/zero page"},
    {kCmdlineAddress, kCmdlineAddress + kCmdlineAreaSize, "command line"},
};

// The RAM ranges of a guest with `memory_bytes` of memory, ascending.
std::vector<GpaRange> GuestRamRanges(uint64_t memory_bytes);

}  // namespace kernel_probe

#endif  // HVSTACK_KERNEL_PROBE_GUEST_LAYOUT_H_
