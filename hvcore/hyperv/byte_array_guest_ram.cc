#include "hvcore/hyperv/byte_array_guest_ram.h"

namespace hvcore::hyperv {

ByteArrayGuestRam::ByteArrayGuestRam(uint64_t size, uint64_t base)
    : base_(base), size_(size), words_((size + 7) / 8, 0) {}

uint8_t* ByteArrayGuestRam::HostPointer(uint64_t gpa, uint64_t len) {
  // Overflow-safe: offset and len are each checked against size_ first.
  if (gpa < base_) return nullptr;
  const uint64_t offset = gpa - base_;
  if (offset > size_ || len > size_ - offset) return nullptr;
  return data() + offset;
}

}  // namespace hvcore::hyperv
