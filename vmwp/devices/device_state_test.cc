// Save/restore of the emulated devices (issue 14): a device restored from a
// saved state answers the guest exactly as the original would have.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmwp/devices/acpi_pm1_event.h"
#include "vmwp/devices/acpi_power_port.h"
#include "vmwp/devices/cmos_rtc.h"
#include "vmwp/devices/i8042.h"
#include "vmwp/devices/uart16550.h"

namespace vmwp {
namespace {

using ::testing::HasSubstr;

// Every register read the guest could make, in order.
std::vector<uint32_t> UartReads(Uart16550& u) {
  std::vector<uint32_t> out;
  for (uint16_t off = 1; off < 8; ++off)
    out.push_back(u.PortRead(0x3F8 + off, 1));
  return out;
}

TEST(DeviceStateTest, UartKeepsRegistersFifoAndInterruptState) {
  std::string sink;
  Uart16550 a([&](std::string_view b) { sink.append(b); });
  std::vector<bool> lines;
  a.SetInterruptLine([&](bool l) { lines.push_back(l); });
  a.PortWrite(0x3FB, 1, 0x83);  // DLAB
  a.PortWrite(0x3F8, 1, 0x01);  // 115200
  a.PortWrite(0x3FB, 1, 0x03);
  a.PortWrite(0x3FC, 1, Uart16550::kMcrOut2 | Uart16550::kMcrDtr);
  a.PortWrite(0x3F9, 1, Uart16550::kIerRxData);
  a.PortWrite(0x3FF, 1, 0x5A);  // scratch
  ASSERT_EQ(a.PushInput("hello"), 5u);
  EXPECT_EQ(a.PortRead(0x3F8, 1), 'h');

  hvstack::saved::Uart16550State state = a.SaveState();
  std::string bytes;
  ASSERT_TRUE(state.SerializeToString(&bytes));
  hvstack::saved::Uart16550State loaded;
  ASSERT_TRUE(loaded.ParseFromString(bytes));
  std::vector<bool> b_lines;
  Uart16550 b([](std::string_view) {});
  b.SetInterruptLine([&](bool l) { b_lines.push_back(l); });
  b_lines.clear();
  ASSERT_TRUE(b.RestoreState(loaded).ok());
  EXPECT_TRUE(b_lines.empty()) << "restore must not drive the line";
  EXPECT_EQ(UartReads(b), UartReads(a));
  std::string rest_a, rest_b;
  for (int i = 0; i < 4; ++i) {
    rest_a.push_back(static_cast<char>(a.PortRead(0x3F8, 1)));
    rest_b.push_back(static_cast<char>(b.PortRead(0x3F8, 1)));
  }
  EXPECT_EQ(rest_b, "ello");
  EXPECT_EQ(rest_a, rest_b);
  EXPECT_EQ(b_lines, std::vector<bool>{false});  // FIFO empty: line drops

  hvstack::saved::Uart16550State bad = state;
  bad.set_rx(std::string(5000, 'x'));
  EXPECT_THAT(b.RestoreState(bad).message(), HasSubstr("5000 bytes"));
  bad = state;
  bad.set_lcr(0x1FF);
  EXPECT_THAT(b.RestoreState(bad).message(), HasSubstr("not a byte"));
  bad = state;
  bad.set_version(2);
  EXPECT_THAT(b.RestoreState(bad).message(), HasSubstr("version 2"));
}

TEST(DeviceStateTest, I8042KeepsBufferAndPendingCommand) {
  I8042 a([] {});
  a.PortWrite(I8042::kCommandPort, 1, 0xAA);  // self-test -> 0x55 queued
  a.PortWrite(I8042::kCommandPort, 1, 0x60);  // next data byte -> CTR
  hvstack::saved::I8042State state = a.SaveState();
  int resets = 0;
  I8042 b([&] { ++resets; });
  ASSERT_TRUE(b.RestoreState(state).ok());
  EXPECT_EQ(b.PortRead(I8042::kCommandPort, 1),
            a.PortRead(I8042::kCommandPort, 1));
  EXPECT_EQ(b.PortRead(I8042::kDataPort, 1), 0x55u);
  b.PortWrite(I8042::kDataPort, 1, 0x47);  // completes the pending 0x60
  EXPECT_EQ(b.command_byte(), 0x47);

  hvstack::saved::I8042State bad = state;
  bad.set_pending(99);
  EXPECT_THAT(b.RestoreState(bad).message(), HasSubstr("pending command 99"));
  bad = state;
  bad.set_ram("short");
  EXPECT_THAT(b.RestoreState(bad).message(), HasSubstr("RAM size 5"));
}

TEST(DeviceStateTest, CmosRtcKeepsRamAndGuestClock) {
  absl::Time host = absl::FromUnixSeconds(1'700'000'000);
  CmosRtc a([&] { return host; });
  a.PortWrite(CmosRtc::kIndexPort, 1, 0x40);  // a RAM byte
  a.PortWrite(CmosRtc::kDataPort, 1, 0x99);
  // The guest sets its clock an hour ahead (SET, write hours, clear SET).
  a.PortWrite(CmosRtc::kIndexPort, 1, CmosRtc::kRegB);
  a.PortWrite(CmosRtc::kDataPort, 1, CmosRtc::kBDefault | CmosRtc::kBSet);
  a.PortWrite(CmosRtc::kIndexPort, 1, CmosRtc::kHours);
  const uint32_t hours = a.PortRead(CmosRtc::kDataPort, 1);
  a.PortWrite(CmosRtc::kDataPort, 1, hours + 1);
  a.PortWrite(CmosRtc::kIndexPort, 1, CmosRtc::kRegB);
  a.PortWrite(CmosRtc::kDataPort, 1, CmosRtc::kBDefault);
  const absl::Time guest = a.GuestTime();
  hvstack::saved::CmosRtcState state = a.SaveState();

  // Restored ten minutes later: the guest clock ran on meanwhile.
  host += absl::Minutes(10);
  CmosRtc b([&] { return host; });
  ASSERT_TRUE(b.RestoreState(state).ok());
  EXPECT_EQ(b.GuestTime(), guest + absl::Minutes(10));
  b.PortWrite(CmosRtc::kIndexPort, 1, 0x40);
  EXPECT_EQ(b.PortRead(CmosRtc::kDataPort, 1), 0x99u);

  hvstack::saved::CmosRtcState bad = state;
  bad.set_held_month(13);
  EXPECT_THAT(b.RestoreState(bad).message(), HasSubstr("held month 13"));
  bad = state;
  bad.set_ram(std::string(3, '\0'));
  EXPECT_THAT(b.RestoreState(bad).message(), HasSubstr("RAM size 3"));
}

TEST(DeviceStateTest, AcpiRegistersRoundTrip) {
  AcpiPm1Event a;
  a.PortWrite(AcpiPm1Event::kPm1aEventPort + 2, 2, 0x0100);
  AcpiPm1Event b;
  ASSERT_TRUE(b.RestoreState(a.SaveState()).ok());
  EXPECT_EQ(b.enable(), 0x0100);
  hvstack::saved::AcpiPm1EventState bad;
  bad.set_version(1);
  bad.set_enable(0x10000);
  EXPECT_THAT(b.RestoreState(bad).message(), HasSubstr("16 bits"));

  bool off = false;
  AcpiPowerPort p([&] { off = true; });
  p.PortWrite(AcpiPowerPort::kPm1aControlPort, 2, 0x0001);
  AcpiPowerPort q([&] { off = true; });
  ASSERT_TRUE(q.RestoreState(p.SaveState()).ok());
  EXPECT_EQ(q.PortRead(AcpiPowerPort::kPm1aControlPort, 2),
            p.PortRead(AcpiPowerPort::kPm1aControlPort, 2));
  EXPECT_FALSE(off);
}

}  // namespace
}  // namespace vmwp
