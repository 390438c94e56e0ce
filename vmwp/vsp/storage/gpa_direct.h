#ifndef HVSTACK_VMWP_VSP_STORAGE_GPA_DIRECT_H_
#define HVSTACK_VMWP_VSP_STORAGE_GPA_DIRECT_H_

// The data buffer of a VM_PKT_DATA_USING_GPA_DIRECT packet: ranges of guest
// pages named by PFN in the packet's header extension (Linux's
// vmbus_sendpacket_mpb_desc). Parsing is pure and fuzzable; resolving checks
// every page against guest RAM and yields host iovecs (adjacent pages
// merged), never touching the data itself.

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "vmwp/vmbus/guest_pages.h"

namespace vsp::storage {

struct GpaDirectBuffer {
  struct Range {
    uint32_t len = 0;
    uint32_t offset = 0;  // into the first page
    std::vector<uint64_t> pfns;
  };
  std::vector<Range> ranges;
  uint64_t total_bytes() const;
};

// Parses the header extension of a GPA-direct packet: u32 reserved,
// u32 rangecount, then each range's u32 len, u32 offset and the PFNs its
// offset + len span. Refuses zero ranges or lengths, offsets outside the
// first page, more than `max_pages` pages in all, and bytes left over.
absl::StatusOr<GpaDirectBuffer> ParseGpaDirect(
    std::span<const uint8_t> extension, uint32_t max_pages);

// Host iovecs for the first `bytes` bytes of `buffer` (at most its total);
// OutOfRange naming the page if one is not guest RAM.
absl::StatusOr<std::vector<iovec>> ResolveGpaDirect(
    const GpaDirectBuffer& buffer, uint64_t bytes, vmbus::GuestPages& memory);

// Copies between host bytes and guest iovecs; returns the bytes copied
// (the smaller of both sizes).
size_t CopyToIovecs(std::span<const uint8_t> from, std::span<const iovec> to);
size_t CopyFromIovecs(std::span<const iovec> from, std::span<uint8_t> to);
// The first `bytes` bytes of `iov`.
std::vector<iovec> PrefixIovecs(std::span<const iovec> iov, uint64_t bytes);

}  // namespace vsp::storage

#endif  // HVSTACK_VMWP_VSP_STORAGE_GPA_DIRECT_H_
