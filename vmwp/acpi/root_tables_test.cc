#include "vmwp/acpi/root_tables.h"

#include "gtest/gtest.h"
#include "vmwp/acpi/table_test_util.h"

namespace vmwp::acpi {
namespace {

TEST(RsdpTest, Revision2WithBothChecksums) {
  const Bytes rsdp = BuildRsdp(0x1234'5678'9ABC);
  ASSERT_EQ(rsdp.size(), 36u);
  EXPECT_EQ(std::string(rsdp.begin(), rsdp.begin() + 8), "RSD PTR ");
  EXPECT_EQ(rsdp[15], 2);
  EXPECT_EQ(U32At(rsdp, 16), 0u) << "no RSDT";
  EXPECT_EQ(U32At(rsdp, 20), 36u);
  EXPECT_EQ(U64At(rsdp, 24), 0x1234'5678'9ABCu);
  // ACPI 1.0 checksum over the first 20 bytes, extended checksum over all 36.
  EXPECT_EQ(ByteSum(absl::MakeConstSpan(rsdp).first(20)), 0);
  EXPECT_EQ(ByteSum(rsdp), 0);
}

TEST(XsdtTest, ListsTableAddresses) {
  const uint64_t addresses[] = {0xE0100, 0x1'0000'0000};
  const Bytes xsdt = BuildXsdt(addresses);
  ASSERT_TRUE(IsValidSdt(xsdt, "XSDT"));
  ASSERT_EQ(xsdt.size(), 36u + 16u);
  EXPECT_EQ(U64At(xsdt, 36), 0xE0100u);
  EXPECT_EQ(U64At(xsdt, 44), 0x1'0000'0000u);
}

}  // namespace
}  // namespace vmwp::acpi
