#include "vmwp/vmbus/gpa_direct.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"

namespace vmbus {

GuestScatter::GuestScatter(std::vector<std::span<uint8_t>> chunks)
    : chunks_(std::move(chunks)) {
  for (const std::span<uint8_t>& c : chunks_) size_ += c.size();
}

namespace {

// Calls fn(chunk pointer, position in the caller's buffer, length) for each
// piece of [offset, offset + len).
template <typename Fn>
bool ForEach(const std::vector<std::span<uint8_t>>& chunks, uint64_t size,
             uint64_t offset, uint64_t len, Fn fn) {
  if (offset > size || len > size - offset) return false;
  uint64_t skip = offset, done = 0;
  for (const std::span<uint8_t>& c : chunks) {
    if (done == len) break;
    if (skip >= c.size()) {
      skip -= c.size();
      continue;
    }
    const uint64_t n = std::min<uint64_t>(c.size() - skip, len - done);
    fn(c.data() + skip, done, n);
    done += n;
    skip = 0;
  }
  return true;
}

}  // namespace

bool GuestScatter::CopyOut(uint64_t offset, uint8_t* dst, uint64_t len) const {
  return ForEach(chunks_, size_, offset, len,
                 [dst](uint8_t* p, uint64_t at, uint64_t n) {
                   std::memcpy(dst + at, p, n);
                 });
}

bool GuestScatter::CopyIn(uint64_t offset, const uint8_t* src,
                          uint64_t len) const {
  return ForEach(chunks_, size_, offset, len,
                 [src](uint8_t* p, uint64_t at, uint64_t n) {
                   std::memcpy(p, src + at, n);
                 });
}

void GuestScatter::AppendTo(std::vector<uint8_t>& out) const {
  const size_t old = out.size();
  out.resize(old + size_);
  CopyOut(0, out.data() + old, size_);
}

std::vector<iovec> GuestScatter::Iovecs(uint64_t bytes) const {
  std::vector<iovec> out;
  for (const std::span<uint8_t>& c : chunks_) {
    if (bytes == 0) break;
    const uint64_t n = std::min<uint64_t>(c.size(), bytes);
    if (!out.empty() &&
        static_cast<uint8_t*>(out.back().iov_base) + out.back().iov_len ==
            c.data()) {
      out.back().iov_len += n;
    } else {
      out.push_back({c.data(), n});
    }
    bytes -= n;
  }
  return out;
}

absl::StatusOr<std::vector<GpaRange>> ParseGpaDirect(
    std::span<const uint8_t> extension, GuestPages& memory,
    uint64_t max_bytes) {
  if (extension.size() < sizeof(GpaDirectHeader)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GPA-direct packet: %d header bytes, less than the range count",
        extension.size()));
  }
  GpaDirectHeader h;
  std::memcpy(&h, extension.data(), sizeof(h));
  // Each range takes at least 16 bytes (header + one PFN): a count beyond
  // that is a lie, refused before parsing anything.
  const std::span<const uint8_t> rest = extension.subspan(sizeof(h));
  if (h.range_count == 0 || h.range_count > rest.size() / 16) {
    return absl::InvalidArgumentError(
        absl::StrFormat("GPA-direct packet: %d ranges in %d bytes",
                        h.range_count, rest.size()));
  }
  absl::StatusOr<std::vector<GpaRange>> ranges =
      ParseGpaRanges(rest, h.range_count, memory,
                     /*allow_repeated_pages=*/true);
  if (!ranges.ok()) return ranges.status();
  uint64_t total = 0;
  for (const GpaRange& r : *ranges) total += r.byte_count;
  if (total > max_bytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GPA-direct packet names %d bytes, more than the %d accepted", total,
        max_bytes));
  }
  return ranges;
}

absl::StatusOr<GuestScatter> ResolveGpaRanges(
    const std::vector<GpaRange>& ranges, GuestPages& memory) {
  std::vector<std::span<uint8_t>> chunks;
  for (const GpaRange& r : ranges) {
    uint64_t offset = r.byte_offset, left = r.byte_count;
    for (uint64_t pfn : r.pfns) {
      if (left == 0) break;
      absl::StatusOr<uint8_t*> page = memory.PageHost(pfn);
      if (!page.ok()) return page.status();
      const uint64_t n = std::min<uint64_t>(kPageSize - offset, left);
      chunks.emplace_back(*page + offset, n);
      left -= n;
      offset = 0;
    }
  }
  return GuestScatter(std::move(chunks));
}

namespace {

// The one-pass parse of GpaDirectIovecs: false whenever ParseGpaDirect or
// ResolveGpaRanges would fail (the caller then asks them for the error).
bool GpaDirectIovecsFast(std::span<const uint8_t> extension, GuestPages& memory,
                         uint64_t max_bytes, uint64_t bytes,
                         std::vector<iovec>& out, uint64_t& total) {
  out.clear();
  total = 0;
  if (extension.size() < sizeof(GpaDirectHeader)) return false;
  GpaDirectHeader h;
  std::memcpy(&h, extension.data(), sizeof(h));
  const std::span<const uint8_t> rest = extension.subspan(sizeof(h));
  if (h.range_count == 0 || h.range_count > rest.size() / 16) return false;
  size_t at = 0;
  for (uint32_t r = 0; r < h.range_count; ++r) {
    if (rest.size() - at < sizeof(GpaRangeHeader)) return false;
    GpaRangeHeader range;
    std::memcpy(&range, rest.data() + at, sizeof(range));
    at += sizeof(range);
    if (range.byte_count == 0 || range.byte_offset >= kPageSize) return false;
    const uint64_t pages =
        (uint64_t{range.byte_offset} + range.byte_count + kPageSize - 1) /
        kPageSize;
    if ((rest.size() - at) / 8 < pages) return false;
    // The whole packet fails on a total beyond max_bytes: stop early.
    total += range.byte_count;
    if (total > max_bytes) return false;
    uint64_t offset = range.byte_offset, left = range.byte_count;
    for (uint64_t i = 0; i < pages; ++i) {
      uint64_t pfn;
      std::memcpy(&pfn, rest.data() + at + 8 * i, 8);
      absl::StatusOr<uint8_t*> page = memory.PageHost(pfn);
      if (!page.ok()) return false;
      const uint64_t n = std::min<uint64_t>(kPageSize - offset, left);
      if (bytes > 0) {
        uint8_t* const chunk = *page + offset;
        const uint64_t m = std::min(n, bytes);
        if (!out.empty() &&
            static_cast<uint8_t*>(out.back().iov_base) + out.back().iov_len ==
                chunk) {
          out.back().iov_len += m;
        } else {
          out.push_back({chunk, m});
        }
        bytes -= m;
      }
      left -= n;
      offset = 0;
    }
    at += pages * 8;
  }
  return at == rest.size();
}

}  // namespace

absl::StatusOr<uint64_t> GpaDirectIovecs(std::span<const uint8_t> extension,
                                         GuestPages& memory, uint64_t max_bytes,
                                         uint64_t bytes,
                                         std::vector<iovec>& out) {
  uint64_t total;
  if (GpaDirectIovecsFast(extension, memory, max_bytes, bytes, out, total)) {
    return total;
  }
  // Refused: the slow path says why, in its own words.
  out.clear();
  absl::StatusOr<std::vector<GpaRange>> ranges =
      ParseGpaDirect(extension, memory, max_bytes);
  if (!ranges.ok()) return ranges.status();
  absl::StatusOr<GuestScatter> scatter = ResolveGpaRanges(*ranges, memory);
  if (!scatter.ok()) return scatter.status();
  // Unreachable while both parsers agree (gpa_direct_test checks they do).
  return absl::InternalError(
      "GPA-direct packet: the one-pass parser refused what the full parse "
      "accepts");
}

absl::StatusOr<MappedGpadl> MapGpadlPages(const Gpadl& gpadl,
                                          GuestPages& memory) {
  if (gpadl.ranges.size() != 1 || gpadl.ranges[0].byte_offset != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GPADL 0x%x must be one range starting on a page boundary (it has "
        "%d ranges)",
        gpadl.handle, gpadl.ranges.size()));
  }
  const GpaRange& range = gpadl.ranges[0];
  MappedGpadl out;
  out.handle = gpadl.handle;
  out.size = range.byte_count;
  out.pages.reserve(range.pfns.size());
  for (uint64_t pfn : range.pfns) {
    absl::StatusOr<uint8_t*> page = memory.PageHost(pfn);
    if (!page.ok()) return page.status();
    out.pages.push_back(*page);
  }
  return out;
}

}  // namespace vmbus
