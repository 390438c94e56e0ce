#ifndef HVSTACK_KERNEL_PROBE_KERNEL_IMAGE_H_
#define HVSTACK_KERNEL_PROBE_KERNEL_IMAGE_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kernel_probe {

// The kinds of kernel image the loader takes, told apart by their magic bytes
// (never by file name):
//   kElf64    an ELF64 x86-64 ET_EXEC: our guest/ programs, or a Linux vmlinux
//             without a PVH note. Entered in 64-bit mode at e_entry.
//   kElfPvh   an ELF64 whose PT_NOTE carries Xen's PHYS32_ENTRY note (Linux's
//             vmlinux with CONFIG_PVH): entered in 32-bit protected mode at
//             that address with EBX = struct hvm_start_info.
//   kBzImage  Linux's bzImage (boot protocol >= 2.12, XLF_KERNEL_64): the
//             protected-mode part is loaded and entered at its 64-bit entry.
enum class KernelFormat { kElf64, kElfPvh, kBzImage };
std::string_view KernelFormatName(KernelFormat format);

// A loadable piece of the kernel: file bytes [file_offset, file_offset +
// file_size) go to guest-physical `gpa`, and the rest up to mem_size is zeroed
// (.bss).
struct KernelSegment {
  uint64_t gpa = 0;
  uint64_t file_offset = 0;
  uint64_t file_size = 0;
  uint64_t mem_size = 0;
  bool executable = false;
};

// Linux's setup header (Documentation/arch/x86/boot.rst), the fields the
// loader uses, validated. Offsets below are those of struct boot_params.
struct BzImageHeader {
  uint16_t version = 0;           // 0x206, e.g. 0x020F for 2.15
  uint8_t setup_sects = 0;        // 0x1F1, with 0 already replaced by 4
  uint64_t setup_bytes = 0;       // (setup_sects + 1) * 512: where the
                                  // protected-mode kernel starts in the file
  uint64_t payload_size = 0;      // file size - setup_bytes: what gets loaded
  uint8_t loadflags = 0;          // 0x211
  uint16_t xloadflags = 0;        // 0x236
  bool relocatable = false;       // 0x234
  uint32_t kernel_alignment = 0;  // 0x230, a power of two
  uint64_t pref_address = 0;      // 0x258
  uint32_t init_size = 0;         // 0x260
  uint32_t initrd_addr_max = 0;   // 0x22C: highest address the initrd may use
  uint32_t cmdline_size = 0;      // 0x238: longest command line, without NUL
  // The file's bytes [0x1F1, 0x202 + byte at 0x201), clamped to the end of
  // struct setup_header's room in boot_params (0x290): copied into the zero
  // page as the protocol asks.
  std::vector<uint8_t> setup_header;
};

struct KernelImageInfo {
  KernelFormat format = KernelFormat::kElf64;
  // ELF: guest-physical 64-bit entry (Linux's startup_64 for a vmlinux).
  // bzImage: 0 here; the entry is load address + 0x200 (see PlaceBzImage).
  uint64_t entry = 0;
  // kElfPvh: the PHYS32 entry from the Xen note (below 4 GiB, inside an
  // executable segment).
  std::optional<uint32_t> pvh_entry;
  uint64_t file_size = 0;
  // ELF: PT_LOAD segments with a non-zero size, sorted by gpa,
  // non-overlapping. bzImage: empty (where it goes depends on the RAM size,
  // see PlaceBzImage).
  std::vector<KernelSegment> segments;
  std::optional<BzImageHeader> bzimage;
};

// Limits that reject absurd (hostile or corrupt) images before any memory is
// touched. A real vmlinux has a handful of PT_LOAD segments totalling tens of
// MiB; a bzImage is ~10 MiB and asks for ~50 MiB (init_size).
inline constexpr uint32_t kMaxProgramHeaders = 64;
inline constexpr uint64_t kMaxKernelLoadBytes = 1ull << 30;
// PT_NOTE segments bigger than this are not read (Linux's is 512 bytes).
inline constexpr uint64_t kMaxNoteSegmentBytes = 1ull << 20;
// The oldest boot protocol accepted: 2.12 has xloadflags (XLF_KERNEL_64) and
// ext_* fields.
inline constexpr uint16_t kMinBootProtocol = 0x020C;
// The setup code runs in one real-mode segment: at most 0x8000 bytes with the
// boot sector, i.e. setup_sects <= 63.
inline constexpr uint8_t kMaxSetupSects = 63;
// The highest offset of a setup header field the loader reads, plus one.
inline constexpr size_t kBzImageHeadBytes = 0x290;

// Validates a kernel image from its headers alone and says what it is (see
// KernelFormat). For ELF: identification, machine and type, the program
// header table, every PT_LOAD segment (inside the file, filesz <= memsz, no
// overflow, inside the range guest RAM can have, clear of the loader's boot
// structures and of the [3, 4) GiB MMIO hole, no overlaps), the entry point
// (inside an executable segment) and the PT_NOTEs (well formed; a PVH entry
// below 4 GiB inside an executable segment). For bzImage: see
// ParseBzImageHeader. Reads only headers: cheap, and needs no KVM (vmms calls
// it at CreateVm/StartVm).
//
// ELF segments are placed at their physical address (p_paddr); an entry point
// that is a virtual address of a segment (p_vaddr != p_paddr) is translated to
// the physical one.
//
// Errors are InvalidArgument and start with "kernel <path>: ", e.g.
//   "kernel /x/y: cannot open: No such file or directory"
//   "kernel /x/y: not a kernel image: not an ELF file (bad magic) and no
//    bzImage setup header ("HdrS" at 0x202)"
//   "kernel /x/y: ELF machine 183 is not x86-64"
//   "kernel /x/y: bzImage boot protocol 2.10 is older than 2.12 ..."
absl::StatusOr<KernelImageInfo> ProbeKernelImage(const std::string& path);

// The same probe over bytes in memory (tests, fuzzing). `name` stands in for
// the path in messages.
absl::StatusOr<KernelImageInfo> ProbeKernelImageBytes(
    std::span<const uint8_t> bytes, const std::string& name = "<memory>");

// Parses and validates a bzImage setup header. `head` is the start of the file
// (at least the first kBzImageHeadBytes bytes when the file has them),
// `file_size` its full size. Checks: boot_flag 0xAA55 and "HdrS", protocol >=
// 2.12, LOADED_HIGH, XLF_KERNEL_64, setup_sects (0 means 4; at most 63), the
// protected-mode part inside the file and not empty or absurd, syssize,
// kernel_alignment a power of two, init_size and pref_address sane.
// InvalidArgument with the problem only (no path).
absl::StatusOr<BzImageHeader> ParseBzImageHeader(std::span<const uint8_t> head,
                                                 uint64_t file_size);

// Walks the ELF notes in `notes` (the bytes of one PT_NOTE segment) and
// returns the value of Xen's XEN_ELFNOTE_PHYS32_ENTRY note (name "Xen", type
// 18, a 4- or 8-byte little-endian address), or nullopt if there is none.
// InvalidArgument for a malformed note (sizes running past the segment) or a
// PHYS32 entry that is not a 32-bit address.
absl::StatusOr<std::optional<uint64_t>> FindPvhEntry(
    std::span<const uint8_t> notes);

// Where a bzImage goes in a guest with `memory_bytes` of RAM (see
// guest_layout.h).
struct BzImagePlacement {
  uint64_t load_address = 0;   // where the protected-mode part is copied
  uint64_t entry64 = 0;        // load_address + 0x200
  uint64_t runtime_start = 0;  // where the kernel runs once decompressed
  // [start, end): everything the kernel occupies before it reads the memory
  // map (the loaded image and [runtime_start, runtime_start + init_size)).
  // The initrd goes above `end`.
  uint64_t start = 0;
  uint64_t end = 0;
};

// Loads at pref_address when the kernel is relocatable and
// [pref_address, + init_size) fits in low RAM, else at 1 MiB. The runtime
// address is align_up(load address, kernel_alignment) for a relocatable kernel
// (never below pref_address: Linux's 64-bit decompressor does not run below
// LOAD_PHYSICAL_ADDR, which it advertises as pref_address), else pref_address.
// InvalidArgument (problem only) when it does not fit.
absl::StatusOr<BzImagePlacement> PlaceBzImage(const BzImageHeader& header,
                                              uint64_t memory_bytes);

// Additionally checks that the kernel fits the RAM of a guest with
// `memory_bytes` of memory (see guest_layout.h): every ELF segment, or the
// bzImage's placement. vmms calls this with the VM's configured memory.
absl::Status CheckKernelFitsMemory(const std::string& path,
                                   const KernelImageInfo& image,
                                   uint64_t memory_bytes);

// The initial ramdisk: a regular, non-empty file no larger than the guest's
// RAM. Returns its size. InvalidArgument "initrd <path>: ...". KVM-free, for
// vmms as well.
absl::StatusOr<uint64_t> ProbeInitrd(const std::string& path,
                                     uint64_t memory_bytes);

}  // namespace kernel_probe

#endif  // HVSTACK_KERNEL_PROBE_KERNEL_IMAGE_H_
