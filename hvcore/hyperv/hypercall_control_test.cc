#include "hvcore/hyperv/hypercall_control.h"

#include "gtest/gtest.h"

namespace hvcore::hyperv {
namespace {

TEST(HypercallControlTest, DecodesEveryField) {
  const uint64_t control =
      0x005C | kHcFast | (3ull << 17) | (0x123ull << 32) | (0x045ull << 48);
  std::optional<HypercallControl> c = DecodeControl(control);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->code, 0x005C);
  EXPECT_TRUE(c->fast);
  EXPECT_EQ(c->var_header_qwords, 3);
  EXPECT_EQ(c->rep_count, 0x123);
  EXPECT_EQ(c->rep_start, 0x045);
}

TEST(HypercallControlTest, MaximalFieldsAreNotReserved) {
  // Every defined field at its widest.
  std::optional<HypercallControl> c = DecodeControl(
      0xFFFF | kHcFast | kHcVarHeaderMask | kHcRepCountMask | kHcRepStartMask);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->var_header_qwords, 0x3FF);
  EXPECT_EQ(c->rep_count, 0xFFF);
  EXPECT_EQ(c->rep_start, 0xFFF);
}

TEST(HypercallControlTest, RejectsEachReservedBit) {
  for (int bit : {27, 28, 29, 30, 31, 44, 45, 46, 47, 60, 61, 62, 63}) {
    EXPECT_FALSE(DecodeControl(0x005C | (1ull << bit)).has_value())
        << "bit " << bit;
  }
}

TEST(HypercallControlTest, ResultEncoding) {
  EXPECT_EQ(HypercallResult(kHvStatusSuccess), 0u);
  EXPECT_EQ(HypercallResult(kHvStatusInvalidConnectionId), 0x12u);
  EXPECT_EQ(HypercallResult(kHvStatusSuccess, 5), 5ull << 32);
}

}  // namespace
}  // namespace hvcore::hyperv
