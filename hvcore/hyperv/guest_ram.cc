#include "hvcore/hyperv/guest_ram.h"

#include "absl/strings/str_format.h"

namespace hvcore::hyperv {
namespace {

absl::Status NotRam(uint64_t gpa, uint64_t len) {
  return absl::OutOfRangeError(
      absl::StrFormat("guest range [%#x, +%#x) is not RAM", gpa, len));
}

}  // namespace

absl::Status ReadGuest(GuestRam& ram, uint64_t gpa, std::span<uint8_t> out) {
  const uint8_t* src = ram.HostPointer(gpa, out.size());
  if (src == nullptr) return NotRam(gpa, out.size());
  std::memcpy(out.data(), src, out.size());
  return absl::OkStatus();
}

absl::Status WriteGuest(GuestRam& ram, uint64_t gpa,
                        std::span<const uint8_t> data) {
  uint8_t* dst = ram.HostPointer(gpa, data.size());
  if (dst == nullptr) return NotRam(gpa, data.size());
  std::memcpy(dst, data.data(), data.size());
  return absl::OkStatus();
}

absl::Status ZeroGuest(GuestRam& ram, uint64_t gpa, uint64_t len) {
  uint8_t* dst = ram.HostPointer(gpa, len);
  if (dst == nullptr) return NotRam(gpa, len);
  std::memset(dst, 0, len);
  return absl::OkStatus();
}

std::atomic<uint64_t>* GuestWord(GuestRam& ram, uint64_t gpa) {
  if (gpa % 8 != 0) return nullptr;
  uint8_t* p = ram.HostPointer(gpa, 8);
  if (p == nullptr || reinterpret_cast<uintptr_t>(p) % 8 != 0) return nullptr;
  static_assert(sizeof(std::atomic<uint64_t>) == 8 &&
                std::atomic<uint64_t>::is_always_lock_free);
  // Guest RAM is plain host memory shared with the vCPU; a lock-free 8-byte
  // atomic has the same representation as the word, which is what KVM's own
  // SynIC relies on too.
  return reinterpret_cast<std::atomic<uint64_t>*>(p);
}

}  // namespace hvcore::hyperv
