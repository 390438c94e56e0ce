#include "hvcore/hyperv/guest_ram.h"

#include <array>
#include <cstdint>
#include <limits>

#include "gtest/gtest.h"
#include "hvcore/hyperv/byte_array_guest_ram.h"

namespace hvcore::hyperv {
namespace {

TEST(ByteArrayGuestRamTest, BoundsAreOverflowSafe) {
  ByteArrayGuestRam ram(0x10000, 0x1000);
  EXPECT_NE(ram.HostPointer(0x1000, 0x10000), nullptr);
  EXPECT_NE(ram.HostPointer(0x11000, 0), nullptr);
  EXPECT_EQ(ram.HostPointer(0xFFF, 1), nullptr);
  EXPECT_EQ(ram.HostPointer(0x10FFF, 2), nullptr);
  EXPECT_EQ(ram.HostPointer(0x2000, std::numeric_limits<uint64_t>::max()),
            nullptr);
  EXPECT_EQ(ram.HostPointer(std::numeric_limits<uint64_t>::max(), 2), nullptr);
}

TEST(GuestRamTest, ReadWriteAndWords) {
  ByteArrayGuestRam ram(0x2000);
  const std::array<uint8_t, 3> bytes = {1, 2, 3};
  ASSERT_TRUE(WriteGuest(ram, 0x10, bytes).ok());
  std::array<uint8_t, 3> back{};
  ASSERT_TRUE(ReadGuest(ram, 0x10, back).ok());
  EXPECT_EQ(back, bytes);
  EXPECT_EQ(ReadGuest(ram, 0x1FFF, back).code(), absl::StatusCode::kOutOfRange);
  EXPECT_FALSE(WriteGuest(ram, 0x2000, bytes).ok());
  EXPECT_NE(GuestWord(ram, 0x18), nullptr);
  EXPECT_EQ(GuestWord(ram, 0x1C), nullptr);    // unaligned
  EXPECT_EQ(GuestWord(ram, 0x2000), nullptr);  // outside
}

}  // namespace
}  // namespace hvcore::hyperv
