#include "vmwp/loader/start_info.h"

#include <gtest/gtest.h>

#include <cstring>

namespace vmwp::pvh {
namespace {

template <typename T>
T Get(const StartInfoPage& page, size_t offset) {
  T value;
  std::memcpy(&value, page.data() + offset, sizeof(T));
  return value;
}

TEST(StartInfoTest, FieldsAtXenOffsets) {
  StartInfoParams params;
  params.cmdline_gpa = 0x20000;
  params.rsdp_gpa = 0xE0000;
  params.initrd = Module{0x7F00000, 0x12345};
  params.memmap = {{0, 0xF000, E820Entry::kReserved},
                   {0x100000, 0x3F00000, E820Entry::kRam},
                   {0xE0000, 0x1000, E820Entry::kAcpi}};
  absl::StatusOr<StartInfoPage> page = BuildStartInfoPage(params, 0x7000);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(Get<uint32_t>(*page, 0), 0x336ec578u);
  EXPECT_EQ(Get<uint32_t>(*page, 4), 1u);
  EXPECT_EQ(Get<uint32_t>(*page, 8), 0u);
  EXPECT_EQ(Get<uint32_t>(*page, 12), 1u);
  EXPECT_EQ(Get<uint64_t>(*page, 16), 0x7040u);
  EXPECT_EQ(Get<uint64_t>(*page, 24), 0x20000u);
  EXPECT_EQ(Get<uint64_t>(*page, 32), 0xE0000u);
  EXPECT_EQ(Get<uint64_t>(*page, 40), 0x7080u);
  EXPECT_EQ(Get<uint32_t>(*page, 48), 3u);
  EXPECT_EQ(Get<uint32_t>(*page, 52), 0u);
  // The module.
  EXPECT_EQ(Get<uint64_t>(*page, 0x40), 0x7F00000u);
  EXPECT_EQ(Get<uint64_t>(*page, 0x48), 0x12345u);
  EXPECT_EQ(Get<uint64_t>(*page, 0x50), 0u);
  // The memory map, 24 bytes an entry.
  EXPECT_EQ(Get<uint64_t>(*page, 0x80 + 24), 0x100000u);
  EXPECT_EQ(Get<uint64_t>(*page, 0x80 + 24 + 8), 0x3F00000u);
  EXPECT_EQ(Get<uint32_t>(*page, 0x80 + 24 + 16), 1u);
  EXPECT_EQ(Get<uint32_t>(*page, 0x80 + 48 + 16), 3u);
  EXPECT_EQ(Get<uint32_t>(*page, 0x80 + 48 + 20), 0u);
}

TEST(StartInfoTest, NoInitrdMeansNoModules) {
  absl::StatusOr<StartInfoPage> page = BuildStartInfoPage({}, 0x7000);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(Get<uint32_t>(*page, 12), 0u);
  EXPECT_EQ(Get<uint64_t>(*page, 16), 0u);
}

TEST(StartInfoTest, TooManyEntries) {
  StartInfoParams params;
  params.memmap.resize(kMaxMemmapEntries + 1);
  EXPECT_EQ(BuildStartInfoPage(params).status().code(),
            absl::StatusCode::kInvalidArgument);
  params.memmap.resize(kMaxMemmapEntries);
  EXPECT_TRUE(BuildStartInfoPage(params).ok());
}

}  // namespace
}  // namespace vmwp::pvh
