// libFuzzer target: the whole KVM-free kernel probe over arbitrary bytes
// (format detection, the ELF64 checks, PT_NOTE walking, the bzImage header),
// then the memory-fit check. Invariants of an accepted image are asserted, so
// a probe that accepts something inconsistent is a crash too.
#include <cstdint>
#include <cstdlib>
#include <span>

#include "kernel_probe/kernel_image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<kernel_probe::KernelImageInfo> info =
      kernel_probe::ProbeKernelImageBytes(std::span<const uint8_t>(data, size));
  if (!info.ok()) {
    if (info.status().code() != absl::StatusCode::kInvalidArgument) abort();
    return 0;
  }
  if (info->format == kernel_probe::KernelFormat::kBzImage) {
    if (!info->bzimage || !info->segments.empty()) abort();
  } else {
    if (info->segments.empty()) abort();
    for (size_t i = 0; i < info->segments.size(); ++i) {
      const kernel_probe::KernelSegment& s = info->segments[i];
      if (s.file_size > s.mem_size || s.file_offset > size ||
          s.file_size > size - s.file_offset) {
        abort();
      }
      if (i > 0 &&
          info->segments[i - 1].gpa + info->segments[i - 1].mem_size > s.gpa) {
        abort();
      }
    }
    if ((info->format == kernel_probe::KernelFormat::kElfPvh) !=
        info->pvh_entry.has_value()) {
      abort();
    }
  }
  for (uint64_t mib : {2ull, 64ull, 4096ull}) {
    absl::Status s =
        kernel_probe::CheckKernelFitsMemory("fuzz", *info, mib << 20);
    if (!s.ok() && s.code() != absl::StatusCode::kInvalidArgument) abort();
  }
  return 0;
}
