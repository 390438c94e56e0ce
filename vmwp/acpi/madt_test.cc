#include "vmwp/acpi/madt.h"

#include <map>

#include "gtest/gtest.h"
#include "vmwp/acpi/sdt.h"
#include "vmwp/acpi/table_test_util.h"

namespace vmwp::acpi {
namespace {

// Entry type -> count, walking the MADT's variable-length entries by their
// length bytes.
std::map<uint8_t, int> CountEntries(const Bytes& madt) {
  std::map<uint8_t, int> counts;
  size_t offset = kMadtFixedSize;
  while (offset < madt.size()) {
    const uint8_t type = madt.at(offset);
    const uint8_t length = madt.at(offset + 1);
    EXPECT_GE(length, 2) << "at " << offset;
    if (length < 2) break;
    ++counts[type];
    offset += length;
  }
  EXPECT_EQ(offset, madt.size()) << "entries overrun the table";
  return counts;
}

class MadtVcpuTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(MadtVcpuTest, OneEnabledLocalApicPerVcpu) {
  AcpiConfig config;
  config.vcpu_count = GetParam();
  const Bytes madt = BuildMadt(config);
  ASSERT_TRUE(IsValidSdt(madt, "APIC"));
  EXPECT_EQ(madt[kSdtRevisionOffset], kMadtRevision);
  EXPECT_EQ(madt.size(), kMadtFixedSize + 8 * GetParam() + 12 + 2 * 10 + 6);
  EXPECT_EQ(U32At(madt, 36), 0xFEE00000u);
  EXPECT_EQ(U32At(madt, 40), kMadtPcatCompat);

  const std::map<uint8_t, int> counts = CountEntries(madt);
  EXPECT_EQ(counts.at(kMadtLocalApic), static_cast<int>(GetParam()));
  EXPECT_EQ(counts.at(kMadtIoApic), 1);
  EXPECT_EQ(counts.at(kMadtInterruptOverride), 2);
  EXPECT_EQ(counts.at(kMadtLocalApicNmi), 1);

  for (uint32_t i = 0; i < GetParam(); ++i) {
    const size_t e = kMadtFixedSize + 8 * i;
    EXPECT_EQ(madt[e], kMadtLocalApic);
    EXPECT_EQ(madt[e + 1], 8);
    EXPECT_EQ(madt[e + 2], i) << "processor UID";
    EXPECT_EQ(madt[e + 3], i) << "APIC id";
    EXPECT_EQ(U32At(madt, e + 4), 1u) << "enabled";
  }
}

INSTANTIATE_TEST_SUITE_P(VcpuCounts, MadtVcpuTest,
                         ::testing::Values(1, 2, 4, 64, kMaxVcpus));

TEST(MadtTest, IoApicAndOverrides) {
  AcpiConfig config;
  config.vcpu_count = 2;
  config.ioapic_id = 3;
  const Bytes madt = BuildMadt(config);
  size_t e = kMadtFixedSize + 2 * 8;
  EXPECT_EQ(madt[e], kMadtIoApic);
  EXPECT_EQ(madt[e + 1], 12);
  EXPECT_EQ(madt[e + 2], 3);
  EXPECT_EQ(U32At(madt, e + 4), 0xFEC00000u);
  EXPECT_EQ(U32At(madt, e + 8), 0u);

  e += 12;  // ISA IRQ 0 -> GSI 2, bus defaults.
  EXPECT_EQ(madt[e], kMadtInterruptOverride);
  EXPECT_EQ(madt[e + 1], 10);
  EXPECT_EQ(madt[e + 2], 0) << "ISA bus";
  EXPECT_EQ(madt[e + 3], 0);
  EXPECT_EQ(U32At(madt, e + 4), 2u);
  EXPECT_EQ(U16At(madt, e + 8), 0);

  e += 10;  // SCI: ISA IRQ 9 -> GSI 9, level, active-high.
  EXPECT_EQ(madt[e + 3], 9);
  EXPECT_EQ(U32At(madt, e + 4), 9u);
  EXPECT_EQ(U16At(madt, e + 8), 0x000D);

  e += 10;  // LINT1 NMI on all processors.
  EXPECT_EQ(madt[e], kMadtLocalApicNmi);
  EXPECT_EQ(madt[e + 1], 6);
  EXPECT_EQ(madt[e + 2], 0xFF);
  EXPECT_EQ(madt[e + 5], 1);
}

}  // namespace
}  // namespace vmwp::acpi
