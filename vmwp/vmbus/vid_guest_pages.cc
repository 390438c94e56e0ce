#include "vmwp/vmbus/vid_guest_pages.h"

namespace vmbus {

absl::StatusOr<uint8_t*> VidGuestPages::PageHost(uint64_t pfn) {
  if (pfn > kMaxPfn) return NotRam(pfn);
  // GetSpan checks the page lies in one RAM region (never the MMIO hole).
  absl::StatusOr<std::span<uint8_t>> span =
      memory_.GetSpan(pfn << kPageShift, kPageSize);
  if (!span.ok()) return NotRam(pfn);
  return span->data();
}

}  // namespace vmbus
