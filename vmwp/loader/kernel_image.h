#ifndef HVSTACK_VMWP_LOADER_KERNEL_IMAGE_H_
#define HVSTACK_VMWP_LOADER_KERNEL_IMAGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace vmwp {

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

struct KernelImageInfo {
  // Guest-physical entry point (Linux's 64-bit entry, startup_64, for a
  // vmlinux).
  uint64_t entry = 0;
  uint64_t file_size = 0;
  // PT_LOAD segments with a non-zero size, sorted by gpa, non-overlapping.
  std::vector<KernelSegment> segments;
};

// Limits that reject absurd (hostile or corrupt) images before any memory is
// touched. A real vmlinux has a handful of PT_LOAD segments totalling tens of
// MiB.
inline constexpr uint32_t kMaxProgramHeaders = 64;
inline constexpr uint64_t kMaxKernelLoadBytes = 1ull << 30;

// Validates an uncompressed x86-64 kernel (an ELF64 ET_EXEC such as Linux's
// vmlinux or a guest/ program) from its headers alone: ELF identification,
// machine and type, the program header table, every PT_LOAD segment (inside the
// file, filesz <= memsz, no overflow, inside the range guest RAM can have,
// clear of the loader's boot structures and of the [3, 4) GiB MMIO hole, no
// overlaps) and the entry point (inside an executable segment). Reads only the
// headers: cheap, and needs no KVM.
//
// Segments are placed at their physical address (p_paddr); an entry point that
// is a virtual address of a segment (p_vaddr != p_paddr) is translated to the
// physical one.
//
// Errors are InvalidArgument and start with "kernel <path>: ", e.g.
//   "kernel /x/y: cannot open: No such file or directory"
//   "kernel /x/y: not an ELF file (bad magic)"
//   "kernel /x/y: ELF machine 183 is not x86-64"
absl::StatusOr<KernelImageInfo> ProbeKernelImage(const std::string& path);

// Additionally checks that every segment fits the RAM of a guest with
// `memory_bytes` of memory (see guest_layout.h). vmms can call this with the
// VM's configured memory.
absl::Status CheckKernelFitsMemory(const std::string& path,
                                   const KernelImageInfo& image,
                                   uint64_t memory_bytes);

}  // namespace vmwp

#endif  // HVSTACK_VMWP_LOADER_KERNEL_IMAGE_H_
