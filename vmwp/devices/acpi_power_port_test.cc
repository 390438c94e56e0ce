#include "vmwp/devices/acpi_power_port.h"

#include <gtest/gtest.h>

namespace vmwp {
namespace {

constexpr uint16_t kPort = AcpiPowerPort::kPm1aControlPort;
constexpr uint16_t kS5 = AcpiPowerPort::kSlpTypS5
                         << AcpiPowerPort::kSlpTypShift;

TEST(AcpiPowerPortTest, SlpEnWithS5PowersOff) {
  int calls = 0;
  AcpiPowerPort port([&] { ++calls; });
  port.PortWrite(kPort, 2, kS5 | AcpiPowerPort::kSlpEn);
  EXPECT_EQ(calls, 1);
}

TEST(AcpiPowerPortTest, S5WithoutSlpEnDoesNothing) {
  int calls = 0;
  AcpiPowerPort port([&] { ++calls; });
  port.PortWrite(kPort, 2, kS5);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(port.PortRead(kPort, 2), kS5);
}

TEST(AcpiPowerPortTest, OtherSleepTypesAreIgnored) {
  int calls = 0;
  AcpiPowerPort port([&] { ++calls; });
  for (uint16_t typ : {0, 1, 3, 4, 7}) {
    port.PortWrite(
        kPort, 2, (typ << AcpiPowerPort::kSlpTypShift) | AcpiPowerPort::kSlpEn);
  }
  EXPECT_EQ(calls, 0);
}

TEST(AcpiPowerPortTest, ReadReturnsLastValueWithoutSlpEn) {
  AcpiPowerPort port([] {});
  port.PortWrite(
      kPort, 2,
      0x0001 | (3 << AcpiPowerPort::kSlpTypShift) | AcpiPowerPort::kSlpEn);
  EXPECT_EQ(port.PortRead(kPort, 2),
            0x0001u | (3u << AcpiPowerPort::kSlpTypShift));
}

TEST(AcpiPowerPortTest, ByteWritesMerge) {
  int calls = 0;
  AcpiPowerPort port([&] { ++calls; });
  port.PortWrite(kPort, 1, 0x01);
  port.PortWrite(kPort + 1, 1, (kS5 | AcpiPowerPort::kSlpEn) >> 8);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(port.PortRead(kPort, 2), 0x01u | kS5);
  EXPECT_EQ(port.PortRead(kPort + 1, 1), static_cast<uint32_t>(kS5 >> 8));
}

TEST(AcpiPowerPortTest, OtherPortsAreOpenBus) {
  AcpiPowerPort port([] {});
  EXPECT_EQ(port.PortRead(kPort + 2, 2), 0xFFFFu);
}

}  // namespace
}  // namespace vmwp
