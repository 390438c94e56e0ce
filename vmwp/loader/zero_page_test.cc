#include "vmwp/loader/zero_page.h"

#include <gtest/gtest.h>

#include <cstring>

namespace vmwp {

using kernel_probe::GpaRange;

namespace {

template <typename T>
T Get(const ZeroPage& page, size_t offset) {
  T value;
  std::memcpy(&value, page.data() + offset, sizeof(T));
  return value;
}

TEST(E820Test, SmallGuest) {
  const GpaRange ram[] = {{0, 64ull << 20, "RAM"}};
  EXPECT_EQ(BuildE820Map(ram),
            (std::vector<E820Entry>{
                {0, 0xF000, E820Entry::kReserved},
                {0xF000, 0x20000 - 0xF000, E820Entry::kRam},
                {0x20000, 0x1000, E820Entry::kReserved},
                {0x21000, 0x9FC00 - 0x21000, E820Entry::kRam},
                {0x9FC00, 0x100000 - 0x9FC00, E820Entry::kReserved},
                {0x100000, (64ull << 20) - 0x100000, E820Entry::kRam},
            }));
}

TEST(E820Test, GuestWithHighRam) {
  const GpaRange ram[] = {{0, 3ull << 30, "low"},
                          {4ull << 30, (4ull << 30) + (1ull << 30), "hi"}};
  std::vector<E820Entry> map = BuildE820Map(ram);
  ASSERT_EQ(map.size(), 7u);
  EXPECT_EQ(map[5],
            (E820Entry{0x100000, (3ull << 30) - 0x100000, E820Entry::kRam}));
  EXPECT_EQ(map[6], (E820Entry{4ull << 30, 1ull << 30, E820Entry::kRam}));
}

TEST(ZeroPageTest, HeaderFieldsAtLinuxOffsets) {
  ZeroPageParams params;
  params.cmdline_gpa = 0x20000;
  params.cmdline_size = 17;
  params.e820 = {{0, 0x1000, E820Entry::kReserved},
                 {0x100000, 0x200000, E820Entry::kRam}};
  absl::StatusOr<ZeroPage> page = BuildZeroPage(params);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(Get<uint16_t>(*page, 0x1FE), 0xAA55);
  EXPECT_EQ(std::memcmp(page->data() + 0x202, "HdrS", 4), 0);
  EXPECT_EQ(Get<uint16_t>(*page, 0x206), 0x020F);
  EXPECT_EQ(Get<uint8_t>(*page, 0x210), 0xFF);
  EXPECT_EQ(Get<uint8_t>(*page, 0x211) & 1, 1);
  EXPECT_EQ(Get<uint32_t>(*page, 0x228), 0x20000u);
  EXPECT_EQ(Get<uint32_t>(*page, 0x0C8), 0u);
  EXPECT_EQ(Get<uint32_t>(*page, 0x238), 17u);
  EXPECT_EQ(Get<uint8_t>(*page, 0x1E8), 2);
  EXPECT_EQ(Get<uint64_t>(*page, 0x2D0), 0u);
  EXPECT_EQ(Get<uint64_t>(*page, 0x2D8), 0x1000u);
  EXPECT_EQ(Get<uint32_t>(*page, 0x2E0), 2u);
  EXPECT_EQ(Get<uint64_t>(*page, 0x2E4), 0x100000u);
  EXPECT_EQ(Get<uint64_t>(*page, 0x2EC), 0x200000u);
  EXPECT_EQ(Get<uint32_t>(*page, 0x2F4), 1u);
}

TEST(ZeroPageTest, HighCommandLineUsesExtPointer) {
  ZeroPageParams params;
  params.cmdline_gpa = 0x123456789A;
  absl::StatusOr<ZeroPage> page = BuildZeroPage(params);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(Get<uint32_t>(*page, 0x228), 0x3456789Au);
  EXPECT_EQ(Get<uint32_t>(*page, 0x0C8), 0x12u);
}

TEST(ZeroPageTest, TooManyE820Entries) {
  ZeroPageParams params;
  params.e820.resize(129);
  EXPECT_EQ(BuildZeroPage(params).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace vmwp
