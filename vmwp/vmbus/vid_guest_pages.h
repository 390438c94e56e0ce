#ifndef HVSTACK_VMWP_VMBUS_VID_GUEST_PAGES_H_
#define HVSTACK_VMWP_VMBUS_VID_GUEST_PAGES_H_

#include "vid/guest_memory.h"
#include "vmwp/vmbus/guest_pages.h"

namespace vmbus {

// Guest pages backed by a partition's vid::GuestMemory (the real worker). A
// separate target so that the ring and protocol code builds without vid (the
// fuzzers compile it outside Bazel).
class VidGuestPages final : public GuestPages {
 public:
  explicit VidGuestPages(vid::GuestMemory& memory) : memory_(memory) {}
  absl::StatusOr<uint8_t*> PageHost(uint64_t pfn) override;

 private:
  vid::GuestMemory& memory_;
};

}  // namespace vmbus

#endif  // HVSTACK_VMWP_VMBUS_VID_GUEST_PAGES_H_
