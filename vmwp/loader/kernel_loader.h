#ifndef HVSTACK_VMWP_LOADER_KERNEL_LOADER_H_
#define HVSTACK_VMWP_LOADER_KERNEL_LOADER_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernel_probe/kernel_image.h"
#include "vid/guest_memory.h"

namespace vmwp {

struct LoadedKernel {
  // Guest-physical 64-bit entry (RSI = the zero page): the ELF entry, or a
  // bzImage's load address + 0x200.
  uint64_t entry = 0;
  kernel_probe::KernelImageInfo image;
  // What the kernel occupies before it reads the memory map, [start, end):
  // its segments, or a bzImage's image and init_size area. An initrd must go
  // above it.
  uint64_t start = 0;
  uint64_t end = 0;
  // bzImage only: where it went.
  std::optional<kernel_probe::BzImagePlacement> placement;
};

// Validates the kernel at `path` (ProbeKernelImage + CheckKernelFitsMemory
// against `memory`'s size) and loads it: an ELF's PT_LOAD segments to their
// physical addresses with their .bss zeroed, or a bzImage's protected-mode
// part at its placement (PlaceBzImage). Errors are InvalidArgument "kernel
// <path>: ...".
absl::StatusOr<LoadedKernel> LoadKernel(const std::string& path,
                                        vid::GuestMemory& memory);

}  // namespace vmwp

#endif  // HVSTACK_VMWP_LOADER_KERNEL_LOADER_H_
