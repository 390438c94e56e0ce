#include "vmwp/vmbus/guest_pages.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "absl/strings/str_format.h"

namespace vmbus {
absl::Status GuestPages::NotRam(uint64_t pfn) {
  return absl::OutOfRangeError(
      absl::StrFormat("guest page 0x%x (gpa 0x%x) is not RAM", pfn,
                      pfn > kMaxPfn ? 0 : pfn << kPageShift));
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
