// The FADT and \_S5_ tell the guest how to power off;
// vmwp/devices/acpi_power_port.h is what listens. If the two drift apart,
// `poweroff` in a Linux guest silently stops working.
#include "gtest/gtest.h"
#include "vmwp/acpi/acpi_config.h"
#include "vmwp/devices/acpi_power_port.h"

namespace vmwp::acpi {
namespace {

TEST(PowerPortConsistencyTest, TablesMatchTheWorkersPm1aControlDevice) {
  EXPECT_EQ(AcpiConfig{}.pm1a_control_port,
            vmwp::AcpiPowerPort::kPm1aControlPort);
  EXPECT_EQ(kS5SleepType, vmwp::AcpiPowerPort::kSlpTypS5);
}

}  // namespace
}  // namespace vmwp::acpi
