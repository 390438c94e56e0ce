#include "vmwp/acpi/acpi_tables.h"

#include "gtest/gtest.h"
#include "vmwp/acpi/table_test_util.h"

namespace vmwp::acpi {
namespace {

// The blob offset of the table at `gpa`, checked to lie inside the blob.
size_t OffsetOf(const AcpiTables& t, uint64_t gpa) {
  EXPECT_GE(gpa, t.base_gpa);
  EXPECT_LT(gpa - t.base_gpa, t.bytes.size());
  return gpa - t.base_gpa;
}

std::string SignatureAt(const AcpiTables& t, uint64_t gpa) {
  const size_t offset = OffsetOf(t, gpa);
  return std::string(t.bytes.begin() + offset, t.bytes.begin() + offset + 4);
}

TEST(AcpiTablesTest, DefaultBlobInTheBiosArea) {
  absl::StatusOr<AcpiTables> t = BuildAcpiTables(AcpiConfig{});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->base_gpa, kBiosAreaStart);
  EXPECT_EQ(t->rsdp_offset, 0u);
  EXPECT_EQ(t->rsdp_gpa(), 0xE0000u);
  EXPECT_EQ(t->bytes.size() % 16, 0u);
  EXPECT_LE(t->base_gpa + t->bytes.size(), kBiosAreaEnd);
  ASSERT_EQ(t->tables.size(), 6u);
  for (const char* sig : {"XSDT", "FACP", "APIC", "DSDT"}) {
    EXPECT_TRUE(IsValidSdt(t->TableBytes(sig), sig));
  }
  EXPECT_EQ(t->Find("FACS")->offset % 64, 0u);
  EXPECT_EQ(t->TableBytes("NONE").size(), 0u);
}

TEST(AcpiTablesTest, PointersFollowFromTheRsdp) {
  absl::StatusOr<AcpiTables> t =
      BuildAcpiTables(AcpiConfig{}, 0x10'0000 - 0x4000);
  ASSERT_TRUE(t.ok()) << t.status();
  const absl::Span<const uint8_t> rsdp = t->TableBytes("RSDP");
  EXPECT_EQ(ByteSum(rsdp.first(20)), 0);
  EXPECT_EQ(ByteSum(rsdp), 0);

  const uint64_t xsdt_gpa = U64At(rsdp, 24);
  ASSERT_EQ(SignatureAt(*t, xsdt_gpa), "XSDT");
  const absl::Span<const uint8_t> xsdt = t->TableBytes("XSDT");
  ASSERT_EQ(xsdt.size(), 36u + 16u);
  const uint64_t fadt_gpa = U64At(xsdt, 36);
  EXPECT_EQ(SignatureAt(*t, fadt_gpa), "FACP");
  EXPECT_EQ(SignatureAt(*t, U64At(xsdt, 44)), "APIC");

  const absl::Span<const uint8_t> fadt = t->TableBytes("FACP");
  EXPECT_EQ(fadt_gpa, t->base_gpa + t->Find("FACP")->offset);
  EXPECT_EQ(SignatureAt(*t, U32At(fadt, 36)), "FACS");
  EXPECT_EQ(SignatureAt(*t, U64At(fadt, 140)), "DSDT");
  EXPECT_EQ(U32At(fadt, 40), U64At(fadt, 140));
}

TEST(AcpiTablesTest, TheLargestConfigFitsTheBiosArea) {
  AcpiConfig config;
  config.vcpu_count = kMaxVcpus;
  config.vmbus = VmbusAcpiDevice{};
  absl::StatusOr<AcpiTables> t = BuildAcpiTables(config);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_LT(t->bytes.size(), 4096u);
  EXPECT_TRUE(IsValidSdt(t->TableBytes("APIC"), "APIC"));
}

TEST(AcpiTablesTest, RejectsBadPlacementsAndConfigs) {
  EXPECT_EQ(BuildAcpiTables(AcpiConfig{}, 0xE0010).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildAcpiTables(AcpiConfig{}, 0xFFFF'FFC0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildAcpiTables(AcpiConfig{}, 0xFFFC0).status().code(),
            absl::StatusCode::kInvalidArgument);
  AcpiConfig bad;
  bad.vcpu_count = 0;
  EXPECT_EQ(BuildAcpiTables(bad).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(AcpiTablesTest, WorksAboveTheBiosArea) {
  absl::StatusOr<AcpiTables> t = BuildAcpiTables(AcpiConfig{}, 0x8000'0000);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->rsdp_gpa(), 0x8000'0000u);
}

}  // namespace
}  // namespace vmwp::acpi
