#ifndef HVSTACK_VMWP_LOADER_ZERO_PAGE_H_
#define HVSTACK_VMWP_LOADER_ZERO_PAGE_H_

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "vmwp/loader/guest_layout.h"

namespace vmwp {

// Linux's struct boot_params ("zero page") for the 64-bit boot protocol
// (Documentation/arch/x86/boot.rst, zero-page.rst;
// arch/x86/include/uapi/asm/bootparam.h). Built as bytes at the documented
// offsets rather than as a mirrored packed struct.
inline constexpr size_t kZeroPageBytes = 4096;
using ZeroPage = std::array<uint8_t, kZeroPageBytes>;

namespace bootparam {
inline constexpr size_t kExtCmdLinePtr =
    0x0C8;  // u32: bits 63..32 of the command line address
inline constexpr size_t kE820Entries = 0x1E8;  // u8
inline constexpr size_t kSetupHeader =
    0x1F1;                                  // struct setup_header starts here
inline constexpr size_t kBootFlag = 0x1FE;  // u16, 0xAA55
inline constexpr size_t kHeader = 0x202;    // u32, "HdrS"
inline constexpr size_t kVersion = 0x206;   // u16, boot protocol version
inline constexpr size_t kTypeOfLoader = 0x210;  // u8
inline constexpr size_t kLoadFlags = 0x211;     // u8
inline constexpr size_t kCmdLinePtr =
    0x228;  // u32: bits 31..0 of the command line address
inline constexpr size_t kCmdlineSize = 0x238;  // u32
inline constexpr size_t kE820Table =
    0x2D0;  // struct boot_e820_entry[128], 20 bytes each
inline constexpr size_t kE820EntryBytes = 20;
inline constexpr size_t kE820MaxEntries = 128;

inline constexpr uint16_t kBootFlagValue = 0xAA55;
inline constexpr uint32_t kHeaderMagic =
    0x53726448;  // "HdrS" read as a little-endian u32
// 2.15: every field we fill (ext_cmd_line_ptr needs >= 2.12) is defined.
inline constexpr uint16_t kProtocolVersion = 0x020F;
// 0xFF: "undefined" boot loader id, the value for loaders without an assigned
// one.
inline constexpr uint8_t kLoaderTypeUndefined = 0xFF;
inline constexpr uint8_t kLoadedHigh =
    0x01;  // the kernel sits at or above 1 MiB
}  // namespace bootparam

struct E820Entry {
  enum Type : uint32_t { kRam = 1, kReserved = 2 };
  uint64_t addr = 0;
  uint64_t size = 0;
  uint32_t type = kRam;
  bool operator==(const E820Entry&) const = default;
};

// The e820 map for a guest whose RAM is `ram` (ascending, non-overlapping): RAM
// everywhere except the boot structures, the command line and the legacy BIOS
// area below 1 MiB, which are reported reserved (where they are backed by RAM).
// Sorted by address.
std::vector<E820Entry> BuildE820Map(std::span<const GpaRange> ram);

struct ZeroPageParams {
  uint64_t cmdline_gpa = kCmdlineAddress;
  // Length of the command line without its terminating NUL.
  uint32_t cmdline_size = 0;
  std::vector<E820Entry> e820;
};

// The zero page: header signature, protocol version, loader type, command line
// pointer and size, e820 table. Everything else is zero. InvalidArgument if the
// e820 map has more than 128 entries.
absl::StatusOr<ZeroPage> BuildZeroPage(const ZeroPageParams& params);

}  // namespace vmwp

#endif  // HVSTACK_VMWP_LOADER_ZERO_PAGE_H_
