#include "vmwp/acpi/acpi_config.h"

#include "gtest/gtest.h"

namespace vmwp::acpi {
namespace {

bool Valid(const AcpiConfig& c) { return ValidateAcpiConfig(c).ok(); }

TEST(AcpiConfigTest, DefaultsAreValid) {
  EXPECT_TRUE(Valid(AcpiConfig{}));
  AcpiConfig with_vmbus;
  with_vmbus.vmbus = VmbusAcpiDevice{};
  EXPECT_TRUE(Valid(with_vmbus));
}

TEST(AcpiConfigTest, VcpuCountRange) {
  AcpiConfig c;
  c.vcpu_count = 0;
  EXPECT_FALSE(Valid(c));
  c.vcpu_count = kMaxVcpus;
  EXPECT_TRUE(Valid(c));
  c.vcpu_count = kMaxVcpus + 1;
  EXPECT_EQ(ValidateAcpiConfig(c).code(), absl::StatusCode::kInvalidArgument);
}

TEST(AcpiConfigTest, IrqConflicts) {
  AcpiConfig c;
  c.sci_irq = 4;  // COM1's
  EXPECT_FALSE(Valid(c));
  c.legacy_devices = false;
  EXPECT_TRUE(Valid(c));
  c.sci_irq = 2;
  EXPECT_FALSE(Valid(c));
  c.sci_irq = 16;
  EXPECT_FALSE(Valid(c));

  AcpiConfig v;
  v.vmbus = VmbusAcpiDevice{.irq = 9};  // the SCI's
  EXPECT_FALSE(Valid(v));
  v.vmbus->irq = 1;  // the keyboard's
  EXPECT_FALSE(Valid(v));
}

TEST(AcpiConfigTest, Pm1aBlocks) {
  AcpiConfig c;
  c.pm1a_control_port = 0x602;  // inside the event block
  EXPECT_FALSE(Valid(c));
  c.pm1a_control_port = 0;
  EXPECT_FALSE(Valid(c));
}

TEST(AcpiConfigTest, LegacyIrqsNeedGsiBaseZero) {
  AcpiConfig c;
  c.ioapic_gsi_base = 24;
  EXPECT_FALSE(Valid(c));
}

}  // namespace
}  // namespace vmwp::acpi
