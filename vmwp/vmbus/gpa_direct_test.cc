#include "vmwp/vmbus/gpa_direct.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace vmbus {
namespace {

constexpr uint64_t kRamPages = 64;

// A GPA-direct header extension as Linux's netvsc_build_mpb_array +
// vmbus_sendpacket_mpb_desc write it: reserved, range count, then per range
// {len, offset, pfn + j for each page the range touches}.
struct Buffer {
  uint32_t len;
  uint32_t offset;
  uint64_t pfn;
};
std::vector<uint8_t> MpbExtension(const std::vector<Buffer>& buffers) {
  std::vector<uint8_t> out(8);
  const uint32_t count = static_cast<uint32_t>(buffers.size());
  std::memcpy(out.data() + 4, &count, 4);
  for (const Buffer& b : buffers) {
    const size_t at = out.size();
    const uint64_t pages = (uint64_t{b.offset} + b.len + 4095) / 4096;
    out.resize(at + 8 + pages * 8);
    std::memcpy(out.data() + at, &b.len, 4);
    std::memcpy(out.data() + at + 4, &b.offset, 4);
    for (uint64_t j = 0; j < pages; ++j) {
      const uint64_t pfn = b.pfn + j;
      std::memcpy(out.data() + at + 8 + j * 8, &pfn, 8);
    }
  }
  return out;
}

class GpaDirectTest : public ::testing::Test {
 protected:
  GpaDirectTest() : memory_(kRamPages) {
    for (uint64_t i = 0; i < kRamPages * 4096; ++i)
      memory_.base()[i] = static_cast<uint8_t>(i * 7 + i / 4096);
  }
  FlatGuestPages memory_;
};

TEST_F(GpaDirectTest, LinuxRangesResolveToTheirBytes) {
  // An RNDIS header at the end of page 3, frame data crossing pages 10-11,
  // and a fragment sharing page 3 with the header.
  const std::vector<Buffer> buffers = {
      {60, 4000, 3}, {3000, 2000, 10}, {100, 0, 3}};
  auto ranges = ParseGpaDirect(MpbExtension(buffers), memory_, 1 << 20);
  ASSERT_TRUE(ranges.ok()) << ranges.status();
  ASSERT_EQ(ranges->size(), 3u);
  auto scatter = ResolveGpaRanges(*ranges, memory_);
  ASSERT_TRUE(scatter.ok()) << scatter.status();
  EXPECT_EQ(scatter->size(), 3160u);
  std::vector<uint8_t> got;
  scatter->AppendTo(got);
  std::vector<uint8_t> want;
  for (const Buffer& b : buffers) {
    const uint8_t* p = memory_.base() + b.pfn * 4096 + b.offset;
    want.insert(want.end(), p, p + b.len);
  }
  EXPECT_EQ(got, want);
  // Partial copies across chunk boundaries.
  std::vector<uint8_t> mid(200);
  ASSERT_TRUE(scatter->CopyOut(30, mid.data(), mid.size()));
  EXPECT_TRUE(std::equal(mid.begin(), mid.end(), want.begin() + 30));
  EXPECT_FALSE(scatter->CopyOut(3000, mid.data(), 161));
  EXPECT_TRUE(scatter->CopyOut(3000, mid.data(), 160));
  // Writes land in guest memory.
  const std::vector<uint8_t> ones(100, 1);
  ASSERT_TRUE(scatter->CopyIn(3060, ones.data(), ones.size()));
  EXPECT_EQ(memory_.base()[3 * 4096 + 40], 1);
}

TEST_F(GpaDirectTest, IovecsMergeAdjacentPagesAndStopAtTheTransfer) {
  // storvsc's layout: one range over pages 5, 6, 7 (contiguous in the host
  // mapping: one iovec) and then page 20 (a second one).
  std::vector<uint8_t> ext(8 + 8 + 4 * 8);
  const uint32_t count = 1, len = 3 * 4096 - 512 + 100, offset = 512;
  std::memcpy(ext.data() + 4, &count, 4);
  std::memcpy(ext.data() + 8, &len, 4);
  std::memcpy(ext.data() + 12, &offset, 4);
  const uint64_t pfns[] = {5, 6, 7, 20};
  std::memcpy(ext.data() + 16, pfns, sizeof(pfns));
  auto ranges = ParseGpaDirect(ext, memory_, 1 << 20);
  ASSERT_TRUE(ranges.ok()) << ranges.status();
  auto scatter = ResolveGpaRanges(*ranges, memory_);
  ASSERT_TRUE(scatter.ok()) << scatter.status();
  std::vector<iovec> all = scatter->Iovecs(len);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].iov_base, memory_.base() + 5 * 4096 + 512);
  EXPECT_EQ(all[0].iov_len, 3u * 4096 - 512);
  EXPECT_EQ(all[1].iov_base, memory_.base() + 20 * 4096);
  EXPECT_EQ(all[1].iov_len, 100u);
  // A shorter transfer ends inside the first iovec; a longer one is cut.
  std::vector<iovec> some = scatter->Iovecs(1000);
  ASSERT_EQ(some.size(), 1u);
  EXPECT_EQ(some[0].iov_len, 1000u);
  EXPECT_EQ(scatter->Iovecs(1 << 20).size(), 2u);
  EXPECT_TRUE(scatter->Iovecs(0).empty());
}

TEST_F(GpaDirectTest, OnePassIovecsAreTheScattersIovecs) {
  // Several ranges, offsets, repeated and adjacent pages, every cut.
  const std::vector<uint8_t> ext = MpbExtension({{3 * 4096 - 512 + 100, 512, 5},
                                                 {100, 8, 1},
                                                 {4096, 0, 2},
                                                 {5000, 4000, 30},
                                                 {64, 0, 2}});
  auto ranges = ParseGpaDirect(ext, memory_, 1 << 20);
  ASSERT_TRUE(ranges.ok()) << ranges.status();
  auto scatter = ResolveGpaRanges(*ranges, memory_);
  ASSERT_TRUE(scatter.ok()) << scatter.status();
  std::vector<iovec> iov(3, iovec{nullptr, 1});  // stale entries go
  for (uint64_t bytes :
       {uint64_t{0}, uint64_t{1}, uint64_t{1000}, uint64_t{3 * 4096},
        scatter->size() - 1, scatter->size(), scatter->size() + 4096}) {
    absl::StatusOr<uint64_t> total =
        GpaDirectIovecs(ext, memory_, 1 << 20, bytes, iov);
    ASSERT_TRUE(total.ok()) << total.status();
    EXPECT_EQ(*total, scatter->size());
    const std::vector<iovec> want = scatter->Iovecs(bytes);
    ASSERT_EQ(iov.size(), want.size()) << bytes;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(iov[i].iov_base, want[i].iov_base) << bytes << " " << i;
      EXPECT_EQ(iov[i].iov_len, want[i].iov_len) << bytes << " " << i;
    }
  }
}

TEST_F(GpaDirectTest, OnePfnPerRangeAsThePageBufferFormat) {
  // vmbus_sendpacket_pagebuffer: hv_page_buffer {len, offset, pfn} records.
  auto ranges =
      ParseGpaDirect(MpbExtension({{100, 8, 1}, {4096, 0, 2}}), memory_, 8192);
  ASSERT_TRUE(ranges.ok()) << ranges.status();
  EXPECT_EQ((*ranges)[1].pfns.size(), 1u);
}

TEST_F(GpaDirectTest, HostileRanges) {
  // The one-pass GpaDirectIovecs must refuse exactly the same, with the same
  // status.
  auto fails = [&](std::vector<uint8_t> ext, uint64_t max = 1 << 20) {
    absl::StatusOr<std::vector<GpaRange>> ranges =
        ParseGpaDirect(ext, memory_, max);
    std::vector<iovec> iov;
    absl::StatusOr<uint64_t> fast =
        GpaDirectIovecs(ext, memory_, max, max, iov);
    EXPECT_EQ(fast.status(), ranges.status());
    if (!fast.ok()) {
      EXPECT_TRUE(iov.empty());
    }
    return !ranges.ok();
  };
  EXPECT_TRUE(fails({}));
  EXPECT_TRUE(fails(std::vector<uint8_t>(7)));
  // Zero ranges; a count larger than the bytes can hold.
  EXPECT_TRUE(fails(MpbExtension({})));
  std::vector<uint8_t> ext = MpbExtension({{10, 0, 1}});
  uint32_t lie = 1000000;
  std::memcpy(ext.data() + 4, &lie, 4);
  EXPECT_TRUE(fails(ext));
  // Outside RAM, in the last page + beyond, zero length, offset past a page.
  EXPECT_TRUE(fails(MpbExtension({{10, 0, kRamPages}})));
  EXPECT_TRUE(fails(MpbExtension({{4097, 0, kRamPages - 1}})));
  EXPECT_TRUE(fails(MpbExtension({{0, 0, 1}})));
  EXPECT_TRUE(fails(MpbExtension({{10, 4096, 1}})));
  EXPECT_TRUE(fails(MpbExtension({{~0u, 0, 1}})));
  // Fewer PFNs than offset + length need (the count is consistent but the
  // bytes end early).
  ext = MpbExtension({{8000, 0, 1}});
  ext.resize(ext.size() - 8);
  EXPECT_TRUE(fails(ext));
  // Bytes left over after the ranges.
  ext = MpbExtension({{10, 0, 1}});
  ext.resize(ext.size() + 8);
  EXPECT_TRUE(fails(ext));
  // More bytes than the caller accepts.
  EXPECT_TRUE(fails(MpbExtension({{4096, 0, 1}, {4096, 0, 2}}), 8191));
  EXPECT_FALSE(fails(MpbExtension({{4096, 0, 1}, {4096, 0, 2}}), 8192));
}

TEST_F(GpaDirectTest, GpadlPagesAsOneRange) {
  Gpadl gpadl;
  gpadl.handle = 0xE1E10;
  gpadl.ranges.push_back({3 * 4096, 0, {5, 9, 7}});
  auto mapped = MapGpadlPages(gpadl, memory_);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  EXPECT_EQ(mapped->size, 3u * 4096);
  ASSERT_EQ(mapped->pages.size(), 3u);
  EXPECT_EQ(mapped->pages[1], memory_.base() + 9 * 4096);
  gpadl.ranges[0].byte_offset = 8;
  EXPECT_FALSE(MapGpadlPages(gpadl, memory_).ok());
  gpadl.ranges[0].byte_offset = 0;
  gpadl.ranges.push_back({4096, 0, {1}});
  EXPECT_FALSE(MapGpadlPages(gpadl, memory_).ok());
}

}  // namespace
}  // namespace vmbus
