// libFuzzer target: the ELF note walker that finds Xen's PHYS32_ENTRY (PVH)
// note in a PT_NOTE segment's bytes.
#include <cstdint>
#include <cstdlib>
#include <span>

#include "kernel_probe/kernel_image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<std::optional<uint64_t>> entry =
      kernel_probe::FindPvhEntry(std::span<const uint8_t>(data, size));
  if (!entry.ok()) {
    if (entry.status().code() != absl::StatusCode::kInvalidArgument) abort();
    return 0;
  }
  if (entry->has_value() && **entry > 0xFFFFFFFFull) abort();
  return 0;
}
