#include "vmwp/acpi/dsdt.h"

#include "gtest/gtest.h"
#include "vmwp/acpi/table_test_util.h"

namespace vmwp::acpi {
namespace {

const Bytes kCom1Hid = {0x08, '_', 'H', 'I', 'D', 0x0C, 0x41, 0xD0, 0x05, 0x01};
const Bytes kKbdHid = {0x08, '_', 'H', 'I', 'D', 0x0C, 0x41, 0xD0, 0x03, 0x03};
const Bytes kRtcHid = {0x08, '_', 'H', 'I', 'D', 0x0C, 0x41, 0xD0, 0x0B, 0x00};
const Bytes kVmbusHid = {0x08, '_', 'H', 'I', 'D', 0x0D,
                         'V',  'M', 'B', 'u', 's', 0};
// Name(\_S5_, Package(4) {5, 0, 0, 0})
const Bytes kS5 = {0x08, '\\', '_',  'S',  '5', '_', 0x12,
                   0x07, 0x04, 0x0A, 0x05, 0,   0,   0};

TEST(DsdtTest, LegacyDevicesAndS5) {
  absl::StatusOr<Bytes> dsdt = BuildDsdt(AcpiConfig{});
  ASSERT_TRUE(dsdt.ok()) << dsdt.status();
  ASSERT_TRUE(IsValidSdt(*dsdt, "DSDT"));
  EXPECT_EQ((*dsdt)[8], kDsdtRevision);
  EXPECT_TRUE(Contains(*dsdt, kS5));
  EXPECT_TRUE(Contains(*dsdt, kCom1Hid));
  EXPECT_TRUE(Contains(*dsdt, kKbdHid));
  EXPECT_TRUE(Contains(*dsdt, kRtcHid));
  EXPECT_FALSE(Contains(*dsdt, kVmbusHid));
  // COM1's IO descriptor: 0x3F8, 8 ports.
  EXPECT_TRUE(
      Contains(*dsdt, Bytes{0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08}));
}

TEST(DsdtTest, VmbusDevice) {
  AcpiConfig config;
  config.vmbus = VmbusAcpiDevice{.irq = 7};
  absl::StatusOr<Bytes> dsdt = BuildDsdt(config);
  ASSERT_TRUE(dsdt.ok()) << dsdt.status();
  ASSERT_TRUE(IsValidSdt(*dsdt, "DSDT"));
  EXPECT_TRUE(Contains(*dsdt, kVmbusHid));
  EXPECT_TRUE(Contains(*dsdt, Bytes{0x08, '_', 'U', 'I', 'D', 0x00}));
  EXPECT_TRUE(Contains(*dsdt, Bytes{0x22, 0x80, 0x00})) << "IRQNoFlags {7}";
  // The hypercall port 0x4856 reserved by a PNP0C02 device.
  EXPECT_TRUE(
      Contains(*dsdt, Bytes{0x47, 0x01, 0x56, 0x48, 0x56, 0x48, 0x01, 0x01}));
  config.vmbus->hypercall_port = 0;
  absl::StatusOr<Bytes> without = BuildDsdt(config);
  ASSERT_TRUE(without.ok());
  EXPECT_FALSE(Contains(*without, Bytes{0x47, 0x01, 0x56, 0x48}));
}

TEST(DsdtTest, WithoutLegacyDevicesOnlyS5) {
  AcpiConfig config;
  config.legacy_devices = false;
  absl::StatusOr<Bytes> dsdt = BuildDsdt(config);
  ASSERT_TRUE(dsdt.ok()) << dsdt.status();
  ASSERT_TRUE(IsValidSdt(*dsdt, "DSDT"));
  EXPECT_EQ(dsdt->size(), 36u + kS5.size());
  EXPECT_TRUE(Contains(*dsdt, kS5));
}

}  // namespace
}  // namespace vmwp::acpi
