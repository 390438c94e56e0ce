#ifndef HVSTACK_VMWP_LOADER_ZERO_PAGE_H_
#define HVSTACK_VMWP_LOADER_ZERO_PAGE_H_

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "kernel_probe/guest_layout.h"

namespace vmwp {

// Linux's struct boot_params ("zero page") for the 64-bit boot protocol
// (Documentation/arch/x86/boot.rst, zero-page.rst;
// arch/x86/include/uapi/asm/bootparam.h). Built as bytes at the documented
// offsets rather than as a mirrored packed struct.
inline constexpr size_t kZeroPageBytes = 4096;
using ZeroPage = std::array<uint8_t, kZeroPageBytes>;

namespace bootparam {
inline constexpr size_t kAcpiRsdpAddr = 0x070;     // u64 (protocol 2.14)
inline constexpr size_t kExtRamdiskImage = 0x0C0;  // u32: bits 63..32
inline constexpr size_t kExtRamdiskSize = 0x0C4;   // u32: bits 63..32
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
inline constexpr size_t kRamdiskImage = 0x218;  // u32: bits 31..0
inline constexpr size_t kRamdiskSize = 0x21C;   // u32: bits 31..0
inline constexpr size_t kHeapEndPtr = 0x224;    // u16
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
inline constexpr uint8_t kCanUseHeap = 0x80;  // heap_end_ptr is valid
// heap_end_ptr: end of the setup heap relative to the real-mode code, minus
// 0x200 (boot.rst's example value). The 64-bit entry skips the real-mode code
// that uses it; it is set so that the header is the one the protocol asks for.
inline constexpr uint16_t kHeapEndPtrValue = 0xFE00;
// Where struct setup_header may extend to in boot_params (the next field,
// edd_mbr_sig_buffer, is at 0x290).
inline constexpr size_t kSetupHeaderLimit = 0x290;
}  // namespace bootparam

struct E820Entry {
  enum Type : uint32_t { kRam = 1, kReserved = 2, kAcpi = 3 };
  uint64_t addr = 0;
  uint64_t size = 0;
  uint32_t type = kRam;
  bool operator==(const E820Entry&) const = default;
};

// The e820 map for a guest whose RAM is `ram` (ascending, non-overlapping): RAM
// everywhere except the boot structures, the command line and the legacy BIOS
// area below 1 MiB, which are reported reserved (where they are backed by RAM).
// With `acpi_data` (a range inside the BIOS area, [kLegacyHoleStart,
// kLegacyHoleEnd)), that part of the BIOS area is reported as ACPI data (type
// 3) instead. Sorted by address; adjacent entries of one type are merged, as
// Linux's own sanitizer would, so the map equals what Linux prints.
std::vector<E820Entry> BuildE820Map(
    std::span<const kernel_probe::GpaRange> ram,
    std::optional<kernel_probe::GpaRange> acpi_data = std::nullopt);

// Linux's name for an e820 type, as its boot log prints it ("usable",
// "reserved", "ACPI data", "ACPI NVS", "unusable", else "type N").
std::string E820TypeName(uint32_t type);

// The map as Linux prints it while booting (arch/x86/kernel/e820.c), one line
// per entry, without the timestamp:
//   "BIOS-e820: [mem 0x0000000000000000-0x000000000000efff] reserved"
// (end inclusive). A test can look for each line in the guest's console.
std::vector<std::string> FormatE820Lines(std::span<const E820Entry> map);

struct ZeroPageParams {
  uint64_t cmdline_gpa = kernel_probe::kCmdlineAddress;
  // Length of the command line without its terminating NUL.
  uint32_t cmdline_size = 0;
  std::vector<E820Entry> e820;
  // A bzImage's setup header (the file's bytes from 0x1F1, see
  // BzImageHeader::setup_header), copied to 0x1F1 before the loader's own
  // fields are written. Empty for an ELF kernel: then the loader writes the
  // header signature and protocol version itself.
  std::vector<uint8_t> setup_header;
  // The initrd; 0/0 for none.
  uint64_t ramdisk_gpa = 0;
  uint64_t ramdisk_size = 0;
  // boot_params.acpi_rsdp_addr; 0 lets Linux scan the BIOS area.
  uint64_t acpi_rsdp_gpa = 0;
};

// The zero page: the setup header (the kernel's, or a minimal one), loader
// type 0xFF, loadflags LOADED_HIGH | CAN_USE_HEAP with heap_end_ptr, command
// line pointer and size, ramdisk address and size (with their ext_ high
// halves), acpi_rsdp_addr, e820 table. Everything else is zero.
// InvalidArgument if the e820 map has more than 128 entries or the setup
// header does not fit.
absl::StatusOr<ZeroPage> BuildZeroPage(const ZeroPageParams& params);

}  // namespace vmwp

#endif  // HVSTACK_VMWP_LOADER_ZERO_PAGE_H_
