#ifndef HVSTACK_VMWP_VMBUS_GUEST_PAGES_H_
#define HVSTACK_VMWP_VMBUS_GUEST_PAGES_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"

namespace vmbus {

inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint32_t kPageShift = 12;

// What VMBus needs from guest RAM: the host address of one 4 KiB guest page.
// GPADLs name guest pages by frame number (PFN) and need not be contiguous in
// guest-physical memory, so rings and buffers are accessed page by page
// through pointers resolved (and bounds-checked) once, when the GPADL is
// created. The pages stay valid for the lifetime of the implementation.
class GuestPages {
 public:
  virtual ~GuestPages() = default;
  // Host address of guest page `pfn`, or OutOfRange if that page is not RAM.
  virtual absl::StatusOr<uint8_t*> PageHost(uint64_t pfn) = 0;

 protected:
  // GPAs are 52 bits at most on x86-64; a larger PFN would overflow a shift.
  static constexpr uint64_t kMaxPfn = (1ull << (52 - kPageShift)) - 1;
  static absl::Status NotRam(uint64_t pfn);
};

// A flat, page-aligned RAM of `pages` pages at guest-physical address 0, for
// tests, fuzzers and protocol peers written in tests.
class FlatGuestPages final : public GuestPages {
 public:
  explicit FlatGuestPages(uint64_t pages);
  ~FlatGuestPages() override;
  FlatGuestPages(const FlatGuestPages&) = delete;
  FlatGuestPages& operator=(const FlatGuestPages&) = delete;

  absl::StatusOr<uint8_t*> PageHost(uint64_t pfn) override;
  uint8_t* base() { return base_; }
  uint64_t pages() const { return pages_; }

 private:
  uint64_t pages_;
  uint8_t* base_;
};

}  // namespace vmbus

#endif  // HVSTACK_VMWP_VMBUS_GUEST_PAGES_H_
