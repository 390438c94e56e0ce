// The tables describe the worker's devices to the guest; the devices are in
// vmwp/devices. If the two drift apart, the guest breaks silently: the FADT
// and \_S5_ must name the register vmwp/devices/acpi_power_port.h listens on
// (or `poweroff` stops working), and the FADT's CENTURY must be the CMOS
// index vmwp/devices/cmos_rtc.h keeps the century in (or the guest's clock
// reads the wrong year).
#include "gtest/gtest.h"
#include "vmwp/acpi/acpi_config.h"
#include "vmwp/acpi/fadt.h"
#include "vmwp/devices/acpi_power_port.h"
#include "vmwp/devices/cmos_rtc.h"

namespace vmwp::acpi {
namespace {

TEST(DeviceConsistencyTest, TablesMatchTheWorkersPm1aControlDevice) {
  EXPECT_EQ(AcpiConfig{}.pm1a_control_port,
            vmwp::AcpiPowerPort::kPm1aControlPort);
  EXPECT_EQ(kS5SleepType, vmwp::AcpiPowerPort::kSlpTypS5);
}

TEST(DeviceConsistencyTest, FadtCenturyIsTheRtcsCenturyRegister) {
  constexpr size_t kCenturyOffset = 108;
  EXPECT_EQ(BuildFadt(AcpiConfig{}, 0, 0)[kCenturyOffset],
            vmwp::CmosRtc::kCentury);
  EXPECT_EQ(kCmosCenturyIndex, vmwp::CmosRtc::kCentury);
}

}  // namespace
}  // namespace vmwp::acpi
