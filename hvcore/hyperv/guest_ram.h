#ifndef HVSTACK_HVCORE_HYPERV_GUEST_RAM_H_
#define HVSTACK_HVCORE_HYPERV_GUEST_RAM_H_

// The one view of guest memory this package has: a host pointer for a
// guest-physical range that lies entirely in RAM. vid's GuestMemory::GetSpan
// adapts to it in a few lines; tests use ByteArrayGuestRam.

#include <atomic>
#include <cstdint>
#include <cstring>
#include <span>

#include "absl/status/status.h"

namespace hvcore::hyperv {

class GuestRam {
 public:
  virtual ~GuestRam() = default;

  // Host address of [gpa, gpa + len) if the whole range is guest RAM in one
  // contiguous host mapping, else nullptr. GPAs come from the guest: the
  // implementation must check the range with overflow-safe arithmetic. The
  // pointer stays valid for the partition's lifetime; the guest may change
  // the bytes at any moment.
  virtual uint8_t* HostPointer(uint64_t gpa, uint64_t len) = 0;
};

// True if [gpa, gpa + len) is RAM.
inline bool IsRam(GuestRam& ram, uint64_t gpa, uint64_t len) {
  return ram.HostPointer(gpa, len) != nullptr;
}

// Copies out of / into guest RAM; OutOfRange if any byte is not RAM (nothing
// is copied then). Copy before validating: the guest can change the bytes
// concurrently (no double fetch).
absl::Status ReadGuest(GuestRam& ram, uint64_t gpa, std::span<uint8_t> out);
absl::Status WriteGuest(GuestRam& ram, uint64_t gpa,
                        std::span<const uint8_t> data);
absl::Status ZeroGuest(GuestRam& ram, uint64_t gpa, uint64_t len);

// An 8-byte-aligned guest word as an atomic, for the words the guest and the
// VMM both modify (message slot headers, event flags). nullptr if not RAM or
// not aligned.
std::atomic<uint64_t>* GuestWord(GuestRam& ram, uint64_t gpa);

}  // namespace hvcore::hyperv

#endif  // HVSTACK_HVCORE_HYPERV_GUEST_RAM_H_
