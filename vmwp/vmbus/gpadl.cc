#include "vmwp/vmbus/gpadl.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"

namespace vmbus {

absl::StatusOr<std::vector<GpaRange>> ParseGpaRanges(
    std::span<const uint8_t> bytes, uint32_t rangecount, GuestPages& memory,
    bool allow_repeated_pages) {
  if (rangecount == 0) {
    return absl::InvalidArgumentError("GPADL has no ranges");
  }
  std::vector<GpaRange> ranges;
  std::vector<uint64_t> all_pfns;
  size_t at = 0;
  for (uint32_t r = 0; r < rangecount; ++r) {
    if (bytes.size() - at < sizeof(GpaRangeHeader)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "GPADL range %d of %d: range_buflen %d ends before its header", r,
          rangecount, bytes.size()));
    }
    GpaRangeHeader h;
    std::memcpy(&h, bytes.data() + at, sizeof(h));
    at += sizeof(h);
    if (h.byte_count == 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("GPADL range %d has a byte count of 0", r));
    }
    if (h.byte_offset >= kPageSize) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "GPADL range %d: byte offset %d is outside its first page", r,
          h.byte_offset));
    }
    const uint64_t pages =
        (uint64_t{h.byte_offset} + h.byte_count + kPageSize - 1) / kPageSize;
    if ((bytes.size() - at) / 8 < pages) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "GPADL range %d: %d bytes at offset %d need %d PFNs, only %d left in "
          "range_buflen",
          r, h.byte_count, h.byte_offset, pages, (bytes.size() - at) / 8));
    }
    GpaRange range;
    range.byte_count = h.byte_count;
    range.byte_offset = h.byte_offset;
    range.pfns.resize(pages);
    std::memcpy(range.pfns.data(), bytes.data() + at, pages * 8);
    at += pages * 8;
    for (uint64_t pfn : range.pfns) {
      if (absl::StatusOr<uint8_t*> host = memory.PageHost(pfn); !host.ok()) {
        return absl::OutOfRangeError(absl::StrFormat(
            "GPADL range %d: %s", r, std::string(host.status().message())));
      }
    }
    if (!allow_repeated_pages) {
      all_pfns.insert(all_pfns.end(), range.pfns.begin(), range.pfns.end());
    }
    ranges.push_back(std::move(range));
  }
  if (at != bytes.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GPADL ranges use %d of range_buflen %d bytes", at, bytes.size()));
  }
  // A page named twice would alias two parts of one buffer (e.g. a ring's
  // header and its data): no well-behaved guest does it.
  std::sort(all_pfns.begin(), all_pfns.end());
  auto dup = std::adjacent_find(all_pfns.begin(), all_pfns.end());
  if (dup != all_pfns.end()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GPADL ranges overlap: guest page 0x%x appears more than once", *dup));
  }
  return ranges;
}

GpadlAssembler::GpadlAssembler(const GpadlHeaderMessage& header)
    : header_(header.fixed), bytes_(header.range_bytes) {}

absl::StatusOr<GpadlAssembler> GpadlAssembler::Restore(
    std::span<const uint8_t> header, std::span<const uint8_t> bytes) {
  GpadlAssembler a;
  if (header.size() != sizeof(a.header_)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("saved GPADL header has %d bytes, expected %d",
                        header.size(), sizeof(a.header_)));
  }
  std::memcpy(&a.header_, header.data(), sizeof(a.header_));
  if (bytes.size() > a.header_.range_buflen || bytes.size() % 8 != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "saved GPADL 0x%x: %d range bytes collected, range_buflen %d",
        a.header_.gpadl, bytes.size(), a.header_.range_buflen));
  }
  a.bytes_.assign(bytes.begin(), bytes.end());
  return a;
}

absl::Status GpadlAssembler::AddBody(const GpadlBodyMessage& body) {
  const size_t add = body.pfns.size() * 8;
  if (add > header_.range_buflen - bytes_.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GPADL 0x%x: GPADL_BODY brings %d bytes past range_buflen %d",
        header_.gpadl, bytes_.size() + add - header_.range_buflen,
        header_.range_buflen));
  }
  const size_t old = bytes_.size();
  bytes_.resize(old + add);
  std::memcpy(bytes_.data() + old, body.pfns.data(), add);
  return absl::OkStatus();
}

absl::StatusOr<Gpadl> GpadlAssembler::Finish(GuestPages& memory) const {
  if (!complete()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("GPADL 0x%x is incomplete: %d of %d bytes",
                        header_.gpadl, bytes_.size(), header_.range_buflen));
  }
  absl::StatusOr<std::vector<GpaRange>> ranges =
      ParseGpaRanges(bytes_, header_.rangecount, memory);
  if (!ranges.ok()) return ranges.status();
  Gpadl gpadl;
  gpadl.handle = header_.gpadl;
  gpadl.child_relid = header_.child_relid;
  gpadl.ranges = *std::move(ranges);
  return gpadl;
}

}  // namespace vmbus
