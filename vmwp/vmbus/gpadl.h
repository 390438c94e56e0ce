#ifndef HVSTACK_VMWP_VMBUS_GPADL_H_
#define HVSTACK_VMWP_VMBUS_GPADL_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "vmwp/vmbus/channel_messages.h"
#include "vmwp/vmbus/guest_pages.h"

namespace vmbus {

// One range of a GPADL (struct gpa_range): byte_count bytes starting
// byte_offset into the first of `pfns` guest pages.
struct GpaRange {
  uint32_t byte_count = 0;
  uint32_t byte_offset = 0;
  std::vector<uint64_t> pfns;
};

// A guest physical address descriptor list: guest memory the guest lends to
// the host under a handle it chose, for a channel's ring or buffers.
struct Gpadl {
  uint32_t handle = 0;
  uint32_t child_relid = 0;
  std::vector<GpaRange> ranges;
};

// Parses exactly `bytes` as `rangecount` ranges and checks them: every range
// non-empty with an offset inside its first page, its PFN count what
// offset + count implies, every page guest RAM, no page named twice in the
// GPADL (overlapping ranges; unless `allow_repeated_pages`, as GPA-direct
// packets need: two buffers may share a page), no bytes left over.
absl::StatusOr<std::vector<GpaRange>> ParseGpaRanges(
    std::span<const uint8_t> bytes, uint32_t rangecount, GuestPages& memory,
    bool allow_repeated_pages = false);

// Collects a GPADL from its GPADL_HEADER and the GPADL_BODY messages that
// carry the rest of its range_buflen bytes.
class GpadlAssembler {
 public:
  explicit GpadlAssembler(const GpadlHeaderMessage& header);
  // One whose header and bodies so far were saved (issue 14): `header` is
  // the struct vmbus_channel_gpadl_header as received, `bytes` the range
  // bytes collected (checked against its range_buflen).
  static absl::StatusOr<GpadlAssembler> Restore(std::span<const uint8_t> header,
                                                std::span<const uint8_t> bytes);
  std::span<const uint8_t> header_bytes() const {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&header_),
                                    sizeof(header_));
  }
  std::span<const uint8_t> bytes() const { return bytes_; }

  uint32_t handle() const { return header_.gpadl; }
  uint32_t child_relid() const { return header_.child_relid; }
  // Appends a body's PFNs; fails if they exceed range_buflen.
  absl::Status AddBody(const GpadlBodyMessage& body);
  bool complete() const { return bytes_.size() == header_.range_buflen; }
  // Validates the complete byte stream (see ParseGpaRanges).
  absl::StatusOr<Gpadl> Finish(GuestPages& memory) const;

 private:
  GpadlAssembler() = default;
  GpadlHeader header_;
  std::vector<uint8_t> bytes_;
};

}  // namespace vmbus

#endif  // HVSTACK_VMWP_VMBUS_GPADL_H_
