#ifndef HVSTACK_VMWP_VMBUS_GPA_DIRECT_H_
#define HVSTACK_VMWP_VMBUS_GPA_DIRECT_H_

// Guest memory named by a VMBus packet instead of copied into the ring: the
// ranges of a VM_PKT_DATA_USING_GPA_DIRECT packet (struct vmdata_gpa_direct:
// a reserved u32, a range count, then gpa_range records), written by Linux's
// vmbus_sendpacket_mpb_desc (netvsc, storvsc) and the older
// vmbus_sendpacket_pagebuffer (one PFN per range). And the reverse: host
// pointers for the pages of a GPADL a VSP uses as a buffer.

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "vmwp/vmbus/gpadl.h"
#include "vmwp/vmbus/guest_pages.h"

namespace vmbus {

// What follows the packet descriptor of a GPA-direct packet, before the
// ranges.
struct GpaDirectHeader {
  uint32_t reserved;
  uint32_t range_count;
};
static_assert(sizeof(GpaDirectHeader) == 8);

// Bytes of guest memory as host spans, one per guest page touched, in order.
// Reading it copies the bytes once (the guest can change them under us: no
// double fetch).
class GuestScatter {
 public:
  GuestScatter() = default;
  explicit GuestScatter(std::vector<std::span<uint8_t>> chunks);

  uint64_t size() const { return size_; }
  const std::vector<std::span<uint8_t>>& chunks() const { return chunks_; }
  // Copies `len` bytes starting `offset` bytes in; false if that range is
  // not inside.
  bool CopyOut(uint64_t offset, uint8_t* dst, uint64_t len) const;
  bool CopyIn(uint64_t offset, const uint8_t* src, uint64_t len) const;
  // Appends every byte to `out`.
  void AppendTo(std::vector<uint8_t>& out) const;
  // The first `bytes` bytes (at most size()) as iovecs for preadv/io_uring,
  // chunks that are adjacent in the host mapping merged into one.
  std::vector<iovec> Iovecs(uint64_t bytes) const;

 private:
  std::vector<std::span<uint8_t>> chunks_;
  uint64_t size_ = 0;
};

// Parses a GPA-direct packet's header extension (everything between the
// descriptor and offset8): the range count, then exactly that many ranges
// (ParseGpaRanges with repeated pages allowed: two buffers may share a page).
// Every page must be guest RAM; the ranges together may describe at most
// `max_bytes`.
absl::StatusOr<std::vector<GpaRange>> ParseGpaDirect(
    std::span<const uint8_t> extension, GuestPages& memory, uint64_t max_bytes);

// The host spans of `ranges`, in order (the pages were checked when the
// ranges were parsed; a page that stopped being RAM fails here).
absl::StatusOr<GuestScatter> ResolveGpaRanges(
    const std::vector<GpaRange>& ranges, GuestPages& memory);

// ParseGpaDirect + ResolveGpaRanges + GuestScatter::Iovecs(bytes) in one
// pass, allocating nothing once `out` has grown: for a VSP's per-request
// data buffer. Accepts and refuses exactly what those do, with the same
// errors. On success `out` holds the iovecs of the first min(bytes, total)
// bytes (adjacent chunks merged) and the result is the total the ranges
// describe (the scatter's size()).
absl::StatusOr<uint64_t> GpaDirectIovecs(std::span<const uint8_t> extension,
                                         GuestPages& memory, uint64_t max_bytes,
                                         uint64_t bytes,
                                         std::vector<iovec>& out);

// A GPADL's memory as a VSP sees it (a buffer the guest lent, e.g. netvsc's
// receive and send buffers): one range, pages resolved, byte offset 0.
struct MappedGpadl {
  uint32_t handle = 0;
  uint32_t size = 0;            // bytes
  std::vector<uint8_t*> pages;  // host address of each 4 KiB page
};

// `gpadl` as one page-aligned range (what netvsc and every Linux buffer
// GPADL is), else InvalidArgument.
absl::StatusOr<MappedGpadl> MapGpadlPages(const Gpadl& gpadl,
                                          GuestPages& memory);

}  // namespace vmbus

#endif  // HVSTACK_VMWP_VMBUS_GPA_DIRECT_H_
