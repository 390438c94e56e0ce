#ifndef HVSTACK_VMWP_BOOT_BOOT_IMAGE_H_
#define HVSTACK_VMWP_BOOT_BOOT_IMAGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernel_probe/kernel_image.h"
#include "vid/guest_memory.h"
#include "vmwp/acpi/acpi_config.h"
#include "vmwp/loader/zero_page.h"

// Composes a guest's boot memory for the Linux boot protocols: the kernel
// (bzImage, vmlinux with or without a PVH note, or one of our ELF guests), the
// initrd, the command line, the ACPI tables, the e820 map, and the zero page
// or PVH start_info that ties them together. Touches guest memory only; the
// boot VP is prepared by boot_vp.h.
//
// Guest-physical layout (see README.md):
//   0x7000            zero page (64-bit entry) or hvm_start_info + module
//                     list (0x7040) + memory map (0x7080) (PVH entry)
//   0x20000           command line, NUL-terminated
//   0xE0000           ACPI tables, RSDP first (16-byte aligned, inside the
//                     0xE0000-0xFFFFF area Linux scans); e820 "ACPI data"
//   >= 1 MiB          the kernel (ELF segments at their paddr; a bzImage at
//                     pref_address or 1 MiB)
//   top of low RAM    the initrd, page-aligned, as high as the kernel allows
namespace vmwp {

struct BootSpec {
  std::string kernel_path;
  std::string initrd_path;  // empty: no initrd
  std::string cmdline;
  // What the ACPI tables describe (vcpu_count must be the VM's).
  acpi::AcpiConfig acpi;
  // Enter a PVH-capable vmlinux through its PVH entry (32-bit protected mode,
  // EBX = start_info). When false (the partition cannot start a VP in
  // protected mode), such a kernel is entered at its 64-bit ELF entry with a
  // zero page, like any vmlinux.
  bool use_pvh_entry = true;
};

enum class BootEntryMode {
  kLongMode64,       // RIP = entry, RSI = zero page (Linux 64-bit protocol)
  kProtectedMode32,  // EIP = entry, EBX = hvm_start_info (PVH)
};

struct BootImage {
  kernel_probe::KernelFormat format = kernel_probe::KernelFormat::kElf64;
  BootEntryMode mode = BootEntryMode::kLongMode64;
  uint64_t entry = 0;
  // RSI (the zero page) or EBX (hvm_start_info).
  uint64_t boot_params_gpa = 0;
  // The kernel's footprint before it reads the memory map.
  uint64_t kernel_start = 0;
  uint64_t kernel_end = 0;
  uint64_t initrd_gpa = 0;  // 0 and 0 without an initrd
  uint64_t initrd_size = 0;
  uint64_t cmdline_gpa = 0;
  uint64_t rsdp_gpa = 0;
  uint64_t acpi_start = 0;  // [acpi_start, acpi_end): reported "ACPI data"
  uint64_t acpi_end = 0;
  std::vector<E820Entry> e820;
};

// Loads everything into `memory` (see the layout above) and says how to enter
// the kernel. Errors: InvalidArgument naming the kernel or initrd path and the
// problem ("kernel <path>: ...", "initrd <path>: ..."), or the command line
// ("command line is 3000 bytes; ..."); FailedPrecondition if guest memory
// cannot be written.
absl::StatusOr<BootImage> LoadBootImage(const BootSpec& spec,
                                        vid::GuestMemory& memory);

// Where the initrd goes: the highest page-aligned address with the whole
// initrd below `limit` (exclusive; min(top of low RAM, initrd_addr_max + 1)),
// and not below `kernel_end` (nor 1 MiB). InvalidArgument "initrd <path>:
// ..." when it does not fit.
absl::StatusOr<uint64_t> PlaceInitrd(const std::string& path, uint64_t size,
                                     uint64_t kernel_end, uint64_t limit);

// The highest address an initrd may use for ELF kernels (which have no
// initrd_addr_max): what Linux's own bzImages advertise.
inline constexpr uint64_t kDefaultInitrdAddrMax = 0x7FFFFFFF;

// One line, e.g. "bzImage kernel: 64-bit entry 0x1000200, zero page 0x7000,
// kernel [0x1000000, 0x4378000), initrd [0x7f00000, +0xe1000), command line
// 0x20000, RSDP 0xe0000".
std::string DescribeBootImage(const BootImage& image);

}  // namespace vmwp

#endif  // HVSTACK_VMWP_BOOT_BOOT_IMAGE_H_
