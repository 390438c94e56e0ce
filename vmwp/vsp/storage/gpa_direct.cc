#include "vmwp/vsp/storage/gpa_direct.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "vmwp/vsp/storage/vstor_protocol.h"

namespace vsp::storage {

uint64_t GpaDirectBuffer::total_bytes() const {
  uint64_t n = 0;
  for (const Range& r : ranges) n += r.len;
  return n;
}

absl::StatusOr<GpaDirectBuffer> ParseGpaDirect(
    std::span<const uint8_t> extension, uint32_t max_pages) {
  if (extension.size() < sizeof(GpaDirectHeader)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("GPA-direct packet: %d header bytes, need %d",
                        extension.size(), sizeof(GpaDirectHeader)));
  }
  GpaDirectHeader h;
  std::memcpy(&h, extension.data(), sizeof(h));
  if (h.rangecount == 0) {
    return absl::InvalidArgumentError("GPA-direct packet without ranges");
  }
  size_t at = sizeof(h);
  uint64_t pages_total = 0;
  GpaDirectBuffer out;
  for (uint32_t i = 0; i < h.rangecount; ++i) {
    if (extension.size() - at < sizeof(GpaDirectRange)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "GPA-direct range %d of %d: the packet ends before it", i,
          h.rangecount));
    }
    GpaDirectRange r;
    std::memcpy(&r, extension.data() + at, sizeof(r));
    at += sizeof(r);
    if (r.len == 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("GPA-direct range %d has length 0", i));
    }
    if (r.offset >= vmbus::kPageSize) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "GPA-direct range %d: offset %d is outside its first page", i,
          r.offset));
    }
    const uint64_t pages =
        (uint64_t{r.offset} + r.len + vmbus::kPageSize - 1) / vmbus::kPageSize;
    pages_total += pages;
    if (pages_total > max_pages) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "GPA-direct buffer spans more than %d pages", max_pages));
    }
    if ((extension.size() - at) / 8 < pages) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "GPA-direct range %d: %d bytes at offset %d need %d PFNs, the "
          "packet has %d",
          i, r.len, r.offset, pages, (extension.size() - at) / 8));
    }
    GpaDirectBuffer::Range range;
    range.len = r.len;
    range.offset = r.offset;
    range.pfns.resize(pages);
    std::memcpy(range.pfns.data(), extension.data() + at, pages * 8);
    at += pages * 8;
    out.ranges.push_back(std::move(range));
  }
  if (at != extension.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GPA-direct packet: %d bytes after its ranges", extension.size() - at));
  }
  return out;
}

absl::StatusOr<std::vector<iovec>> ResolveGpaDirect(
    const GpaDirectBuffer& buffer, uint64_t bytes, vmbus::GuestPages& memory) {
  std::vector<iovec> out;
  uint64_t left = std::min(bytes, buffer.total_bytes());
  for (const GpaDirectBuffer::Range& r : buffer.ranges) {
    uint64_t in_range = r.len;
    uint32_t offset = r.offset;
    for (uint64_t pfn : r.pfns) {
      if (left == 0 || in_range == 0) break;
      absl::StatusOr<uint8_t*> page = memory.PageHost(pfn);
      if (!page.ok()) {
        return absl::OutOfRangeError(absl::StrFormat(
            "GPA-direct buffer: guest page 0x%x is not RAM", pfn));
      }
      const uint64_t n =
          std::min<uint64_t>({vmbus::kPageSize - offset, in_range, left});
      uint8_t* host = *page + offset;
      if (!out.empty() &&
          static_cast<uint8_t*>(out.back().iov_base) + out.back().iov_len ==
              host) {
        out.back().iov_len += n;  // contiguous in the host mapping
      } else {
        out.push_back({host, n});
      }
      in_range -= n;
      left -= n;
      offset = 0;
    }
    if (left == 0) break;
  }
  return out;
}

size_t CopyToIovecs(std::span<const uint8_t> from, std::span<const iovec> to) {
  size_t done = 0;
  for (const iovec& v : to) {
    if (done == from.size()) break;
    const size_t n = std::min(v.iov_len, from.size() - done);
    std::memcpy(v.iov_base, from.data() + done, n);
    done += n;
  }
  return done;
}

size_t CopyFromIovecs(std::span<const iovec> from, std::span<uint8_t> to) {
  size_t done = 0;
  for (const iovec& v : from) {
    if (done == to.size()) break;
    const size_t n = std::min(v.iov_len, to.size() - done);
    std::memcpy(to.data() + done, v.iov_base, n);
    done += n;
  }
  return done;
}

std::vector<iovec> PrefixIovecs(std::span<const iovec> iov, uint64_t bytes) {
  std::vector<iovec> out;
  for (const iovec& v : iov) {
    if (bytes == 0) break;
    const uint64_t n = std::min<uint64_t>(v.iov_len, bytes);
    out.push_back({v.iov_base, n});
    bytes -= n;
  }
  return out;
}

}  // namespace vsp::storage
