#ifndef HVSTACK_VMWP_LOADER_START_INFO_H_
#define HVSTACK_VMWP_LOADER_START_INFO_H_

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "kernel_probe/guest_layout.h"
#include "vmwp/loader/zero_page.h"

// The PVH boot protocol's start of day structure, struct hvm_start_info
// (Xen's include/public/arch-x86/hvm/start_info.h, which Linux copies to
// include/xen/interface/hvm/start_info.h), built as bytes at its documented
// offsets. A PVH kernel is entered in 32-bit protected mode with EBX = the
// structure's address.
namespace vmwp::pvh {

inline constexpr uint32_t kStartInfoMagic = 0x336ec578;  // "xEn3" | 0x80
inline constexpr uint32_t kStartInfoVersion = 1;         // has the memmap

// hvm_start_info (56 bytes).
inline constexpr size_t kMagic = 0;           // u32
inline constexpr size_t kVersion = 4;         // u32
inline constexpr size_t kFlags = 8;           // u32
inline constexpr size_t kNrModules = 12;      // u32
inline constexpr size_t kModlistPaddr = 16;   // u64
inline constexpr size_t kCmdlinePaddr = 24;   // u64
inline constexpr size_t kRsdpPaddr = 32;      // u64
inline constexpr size_t kMemmapPaddr = 40;    // u64
inline constexpr size_t kMemmapEntries = 48;  // u32
inline constexpr size_t kStartInfoBytes = 56;
// hvm_modlist_entry: paddr, size, cmdline_paddr, reserved (u64 each).
inline constexpr size_t kModlistEntryBytes = 32;
// hvm_memmap_table_entry: addr, size (u64), type, reserved (u32). The types
// are e820's (1 RAM, 2 reserved, 3 ACPI ...).
inline constexpr size_t kMemmapEntryBytes = 24;

// PVH has no zero page, so its structures use the zero page's slot (the one
// page of [0x500, 0xF000) that hvcore leaves to the loader): start_info at
// 0x7000, the module list at 0x7040, the memory map at 0x7080.
inline constexpr uint64_t kStartInfoAddress = kernel_probe::kZeroPageAddress;
inline constexpr size_t kModlistOffset = 0x40;
inline constexpr size_t kMemmapOffset = 0x80;
inline constexpr size_t kPageBytes = 4096;
inline constexpr size_t kMaxMemmapEntries =
    (kPageBytes - kMemmapOffset) / kMemmapEntryBytes;
using StartInfoPage = std::array<uint8_t, kPageBytes>;

struct Module {
  uint64_t gpa = 0;
  uint64_t size = 0;
};

struct StartInfoParams {
  uint64_t cmdline_gpa = kernel_probe::kCmdlineAddress;
  uint64_t rsdp_gpa = 0;         // 0: none (the guest scans the BIOS area)
  std::optional<Module> initrd;  // one module, no module command line
  std::vector<E820Entry> memmap;
};

// The page to copy to `page_gpa` (normally kStartInfoAddress): start_info at
// its start, the module list and the memory map after it, with their
// addresses computed from `page_gpa`. InvalidArgument if the memory map has
// more than kMaxMemmapEntries entries.
absl::StatusOr<StartInfoPage> BuildStartInfoPage(
    const StartInfoParams& params, uint64_t page_gpa = kStartInfoAddress);

}  // namespace vmwp::pvh

#endif  // HVSTACK_VMWP_LOADER_START_INFO_H_
