#ifndef HVSTACK_HVCORE_HYPERV_BYTE_ARRAY_GUEST_RAM_H_
#define HVSTACK_HVCORE_HYPERV_BYTE_ARRAY_GUEST_RAM_H_

// GuestRam over a heap array: RAM at [base, base + size), nothing else. For
// tests and fuzzers of this package, which must run without /dev/kvm.

#include <cstdint>
#include <vector>

#include "hvcore/hyperv/guest_ram.h"

namespace hvcore::hyperv {

class ByteArrayGuestRam final : public GuestRam {
 public:
  explicit ByteArrayGuestRam(uint64_t size, uint64_t base = 0);

  uint8_t* HostPointer(uint64_t gpa, uint64_t len) override;

  uint64_t base() const { return base_; }
  uint64_t size() const { return size_; }
  uint8_t* data() { return reinterpret_cast<uint8_t*>(words_.data()); }

 private:
  uint64_t base_;
  uint64_t size_;
  std::vector<uint64_t> words_;  // 8-byte aligned, so guest words are atomic
};

}  // namespace hvcore::hyperv

#endif  // HVSTACK_HVCORE_HYPERV_BYTE_ARRAY_GUEST_RAM_H_
