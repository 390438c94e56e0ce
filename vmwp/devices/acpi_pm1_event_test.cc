#include "vmwp/devices/acpi_pm1_event.h"

#include <gtest/gtest.h>

namespace vmwp {
namespace {

constexpr uint16_t kBase = AcpiPm1Event::kPm1aEventPort;

TEST(AcpiPm1EventTest, StatusReadsZero) {
  AcpiPm1Event pm1;
  EXPECT_EQ(pm1.PortRead(kBase, 2), 0u);
  pm1.PortWrite(kBase, 2, 0xFFFF);  // write-1-to-clear everything
  EXPECT_EQ(pm1.PortRead(kBase, 2), 0u);
  EXPECT_EQ(pm1.PortRead(kBase, 4), 0u);
}

TEST(AcpiPm1EventTest, EnableKeepsWhatIsWritten) {
  AcpiPm1Event pm1;
  pm1.PortWrite(kBase + 2, 2, 0x0100);  // PWRBTN_EN
  EXPECT_EQ(pm1.enable(), 0x0100);
  EXPECT_EQ(pm1.PortRead(kBase + 2, 2), 0x0100u);
  EXPECT_EQ(pm1.PortRead(kBase, 4), 0x01000000u);
  EXPECT_EQ(pm1.PortRead(kBase, 2), 0u) << "status still 0";
  pm1.PortWrite(kBase + 2, 1, 0x21);
  EXPECT_EQ(pm1.enable(), 0x0121);
  pm1.PortWrite(kBase, 4, 0x00000000);
  EXPECT_EQ(pm1.enable(), 0);
}

TEST(AcpiPm1EventTest, BytesBeyondTheBlockReadOpenBus) {
  AcpiPm1Event pm1;
  EXPECT_EQ(pm1.PortRead(kBase + 3, 2), 0xFF00u);
}

}  // namespace
}  // namespace vmwp
