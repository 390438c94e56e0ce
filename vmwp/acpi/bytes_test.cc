#include "vmwp/acpi/bytes.h"

#include "gtest/gtest.h"

namespace vmwp::acpi {
namespace {

TEST(BytesTest, AppendsLittleEndian) {
  Bytes b;
  AppendU16(b, 0x1234);
  AppendU32(b, 0xAABBCCDD);
  AppendU64(b, 0x0102030405060708);
  EXPECT_EQ(
      b, (Bytes{0x34, 0x12, 0xDD, 0xCC, 0xBB, 0xAA, 8, 7, 6, 5, 4, 3, 2, 1}));
  EXPECT_EQ(ReadLe(b, 2, 4), 0xAABBCCDDu);
  EXPECT_EQ(ReadLe(b, 6, 8), 0x0102030405060708u);
}

TEST(BytesTest, WriteLeOverwritesInPlace) {
  Bytes b(6, 0);
  WriteLe(b, 1, 0xBEEF, 2);
  EXPECT_EQ(b, (Bytes{0, 0xEF, 0xBE, 0, 0, 0}));
}

TEST(BytesTest, FixedStringsArePaddedOrTruncated) {
  Bytes b;
  AppendFixedString(b, "HVSTACK", 8);
  AppendFixedString(b, "ABCDEFG", 4);
  AppendFixedString(b, "", 2, '\0');
  EXPECT_EQ(std::string(b.begin(), b.end()),
            std::string("HVSTACK ABCD\0\0", 14));
}

TEST(BytesTest, ChecksumMakesTheSumZero) {
  Bytes b = {0x01, 0x02, 0xFF, 0x80};
  const uint8_t c = ChecksumFor(b);
  b.push_back(c);
  EXPECT_EQ(ByteSum(b), 0);
  EXPECT_EQ(ChecksumFor(Bytes{}), 0);
  EXPECT_EQ(ChecksumFor(Bytes{0x00, 0x00}), 0);
}

}  // namespace
}  // namespace vmwp::acpi
