#include "kernel_probe/guest_layout.h"

#include <algorithm>

namespace kernel_probe {

std::vector<GpaRange> GuestRamRanges(uint64_t memory_bytes) {
  std::vector<GpaRange> ranges;
  const uint64_t low = std::min(memory_bytes, kLowRamEnd);
  if (low > 0) ranges.push_back({0, low, "low RAM"});
  if (memory_bytes > kLowRamEnd) {
    ranges.push_back({kHighRamStart,
                      kHighRamStart + (memory_bytes - kLowRamEnd), "high RAM"});
  }
  return ranges;
}

}  // namespace kernel_probe
