#include "vid/guest_memory.h"

#include <cstdint>
#include <limits>

#include "gtest/gtest.h"

namespace vid {
namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;

TEST(GuestMemoryTest, SmallRamIsOneLowRegion) {
  auto mem = GuestMemory::Create(16 * kMiB);
  ASSERT_TRUE(mem.ok()) << mem.status();
  ASSERT_EQ((*mem)->regions().size(), 1u);
  EXPECT_EQ((*mem)->regions()[0].gpa, 0u);
  EXPECT_EQ((*mem)->regions()[0].size, 16 * kMiB);
  EXPECT_EQ((*mem)->size(), 16 * kMiB);
}

TEST(GuestMemoryTest, LargeRamSkipsTheMmioHole) {
  auto mem =
      GuestMemory::Create(4 * kGiB);  // MAP_NORESERVE: nothing is committed
  ASSERT_TRUE(mem.ok()) << mem.status();
  auto regions = (*mem)->regions();
  ASSERT_EQ(regions.size(), 2u);
  EXPECT_EQ(regions[0].gpa, 0u);
  EXPECT_EQ(regions[0].size, 3 * kGiB);
  EXPECT_EQ(regions[1].gpa, 4 * kGiB);
  EXPECT_EQ(regions[1].size, 1 * kGiB);

  GuestMemory& m = **mem;
  EXPECT_TRUE(m.Contains(3 * kGiB - 8, 8));
  EXPECT_FALSE(m.Contains(3 * kGiB - 8, 9)) << "straddles into the hole";
  EXPECT_FALSE(m.Contains(3 * kGiB, 1)) << "the hole";
  EXPECT_FALSE(m.Contains(4 * kGiB - 1, 2)) << "straddles out of the hole";
  EXPECT_TRUE(m.Contains(4 * kGiB, 8));
  EXPECT_TRUE(m.Contains(5 * kGiB - 8, 8));
  EXPECT_FALSE(m.Contains(5 * kGiB - 8, 9));

  // Writes land in the right host bytes on both sides of the hole.
  ASSERT_TRUE(m.WriteObject<uint64_t>(4 * kGiB, 0x1122334455667788).ok());
  EXPECT_EQ(*m.ReadObject<uint64_t>(4 * kGiB), 0x1122334455667788u);
  EXPECT_EQ(regions[1].host[0], 0x88);
  ASSERT_TRUE(m.WriteObject<uint32_t>(0x1000, 0xCAFEBABE).ok());
  EXPECT_EQ(*m.ReadObject<uint32_t>(0x1000), 0xCAFEBABEu);
}

TEST(GuestMemoryTest, RejectsOutOfRangeAndOverflowingAccesses) {
  auto mem = GuestMemory::Create(2 * kMiB);
  ASSERT_TRUE(mem.ok());
  GuestMemory& m = **mem;
  uint8_t buf[16] = {};
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

  EXPECT_TRUE(m.Read(2 * kMiB - 16, buf).ok());
  EXPECT_EQ(m.Read(2 * kMiB - 15, buf).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(m.Read(2 * kMiB, buf).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(m.Write(kMax - 4, buf).code(), absl::StatusCode::kOutOfRange)
      << "gpa+len wraps";
  EXPECT_EQ(m.Read(kMax, buf).code(), absl::StatusCode::kOutOfRange);
  EXPECT_FALSE(m.GetSpan(16, kMax).ok()) << "len wraps";
  EXPECT_FALSE(m.GetSpan(kMax, 1).ok());
  EXPECT_FALSE(m.Fill(1 * kMiB, kMax - kMiB + 2, 0).ok());
  EXPECT_FALSE(m.ReadObject<uint64_t>(2 * kMiB - 4).ok());

  // Zero-length accesses at the very end are fine; one past is not.
  EXPECT_TRUE(m.GetSpan(2 * kMiB, 0).ok());
  EXPECT_FALSE(m.GetSpan(2 * kMiB + 1, 0).ok());

  absl::Status s = m.Read(3 * kGiB, buf);
  EXPECT_NE(s.message().find("is not inside guest RAM"),
            absl::string_view::npos)
      << s;
}

TEST(GuestMemoryTest, GetSpanAliasesGuestMemory) {
  auto mem = GuestMemory::Create(2 * kMiB);
  ASSERT_TRUE(mem.ok());
  auto span = (*mem)->GetSpan(0x2000, 4);
  ASSERT_TRUE(span.ok());
  (*span)[0] = 0xAB;
  EXPECT_EQ(*(*mem)->ReadObject<uint8_t>(0x2000), 0xAB);
}

TEST(GuestMemoryTest, RejectsBadSizes) {
  EXPECT_EQ(GuestMemory::Create(0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GuestMemory::Create(3 * kMiB).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GuestMemory::Create(4096ull * kGiB).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace vid
