#include "vmwp/vmbus/guest_pages.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "absl/strings/str_format.h"
#include "vid/guest_memory.h"

namespace vmbus {
namespace {

// GPAs are 52 bits at most on x86-64; a larger PFN would overflow the shift.
constexpr uint64_t kMaxPfn = (1ull << (52 - kPageShift)) - 1;

absl::Status NotRam(uint64_t pfn) {
  return absl::OutOfRangeError(
      absl::StrFormat("guest page 0x%x (gpa 0x%x) is not RAM", pfn,
                      pfn > kMaxPfn ? 0 : pfn << kPageShift));
}

}  // namespace

absl::StatusOr<uint8_t*> VidGuestPages::PageHost(uint64_t pfn) {
  if (pfn > kMaxPfn) return NotRam(pfn);
  absl::StatusOr<std::span<uint8_t>> span =
      memory_.GetSpan(pfn << kPageShift, kPageSize);
  if (!span.ok()) return NotRam(pfn);
  return span->data();
}

FlatGuestPages::FlatGuestPages(uint64_t pages) : pages_(pages) {
  base_ = static_cast<uint8_t*>(
      std::aligned_alloc(kPageSize, (pages ? pages : 1) * kPageSize));
  if (base_ == nullptr) throw std::bad_alloc();
  std::memset(base_, 0, (pages ? pages : 1) * kPageSize);
}

FlatGuestPages::~FlatGuestPages() { std::free(base_); }

absl::StatusOr<uint8_t*> FlatGuestPages::PageHost(uint64_t pfn) {
  if (pfn >= pages_) return NotRam(pfn);
  return base_ + pfn * kPageSize;
}

}  // namespace vmbus
