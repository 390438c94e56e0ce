#ifndef HVSTACK_VMWP_LOADER_KERNEL_LOADER_H_
#define HVSTACK_VMWP_LOADER_KERNEL_LOADER_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "vid/guest_memory.h"
#include "vmwp/loader/kernel_image.h"

namespace vmwp {

struct LoadedKernel {
  uint64_t entry =
      0;  // guest-physical; where the boot VP starts (RSI = the zero page)
  KernelImageInfo image;
};

// Validates the ELF kernel at `path` (ProbeKernelImage + CheckKernelFitsMemory
// against `memory`'s size), copies its PT_LOAD segments to their physical
// addresses and zeroes their .bss. Errors are InvalidArgument "kernel <path>:
// ...".
absl::StatusOr<LoadedKernel> LoadKernel(const std::string& path,
                                        vid::GuestMemory& memory);

// Writes the command line (NUL-terminated, at kCmdlineAddress) and the zero
// page (at kZeroPageAddress) with an e820 map of `memory`. InvalidArgument for
// a command line longer than kMaxCmdlineBytes or containing a NUL byte.
absl::Status WriteBootParams(vid::GuestMemory& memory,
                             std::string_view cmdline);

}  // namespace vmwp

#endif  // HVSTACK_VMWP_LOADER_KERNEL_LOADER_H_
