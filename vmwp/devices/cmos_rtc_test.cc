#include "vmwp/devices/cmos_rtc.h"

#include <gtest/gtest.h>

#include "absl/time/civil_time.h"

namespace vmwp {
namespace {

absl::Time Utc(int64_t y, int mo, int d, int h, int mi, int s) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s),
                         absl::UTCTimeZone());
}

class CmosRtcTest : public ::testing::Test {
 protected:
  CmosRtcTest() : rtc_([this] { return host_; }) {}

  uint8_t Reg(uint8_t index) {
    rtc_.PortWrite(CmosRtc::kIndexPort, 1, index);
    return static_cast<uint8_t>(rtc_.PortRead(CmosRtc::kDataPort, 1));
  }
  void SetReg(uint8_t index, uint8_t value) {
    rtc_.PortWrite(CmosRtc::kIndexPort, 1, index);
    rtc_.PortWrite(CmosRtc::kDataPort, 1, value);
  }

  // Tuesday 2024-02-27 13:45:56.5 UTC.
  absl::Time host_ = Utc(2024, 2, 27, 13, 45, 56) + absl::Milliseconds(500);
  CmosRtc rtc_;
};

TEST_F(CmosRtcTest, ReadsHostTimeInBcd24h) {
  EXPECT_EQ(Reg(CmosRtc::kSeconds), 0x56);
  EXPECT_EQ(Reg(CmosRtc::kMinutes), 0x45);
  EXPECT_EQ(Reg(CmosRtc::kHours), 0x13);
  EXPECT_EQ(Reg(CmosRtc::kDayOfWeek), 3);  // Tuesday (1 = Sunday)
  EXPECT_EQ(Reg(CmosRtc::kDayOfMonth), 0x27);
  EXPECT_EQ(Reg(CmosRtc::kMonth), 0x02);
  EXPECT_EQ(Reg(CmosRtc::kYear), 0x24);
  EXPECT_EQ(Reg(CmosRtc::kCentury), 0x20);
  EXPECT_EQ(Reg(CmosRtc::kRegA), CmosRtc::kADefault);
  EXPECT_EQ(Reg(CmosRtc::kRegB), CmosRtc::kBDefault);
  EXPECT_EQ(Reg(CmosRtc::kRegD), CmosRtc::kDValid);
}

TEST_F(CmosRtcTest, BinaryMode) {
  SetReg(CmosRtc::kRegB, CmosRtc::kB24Hour | CmosRtc::kBBinary);
  EXPECT_EQ(Reg(CmosRtc::kSeconds), 56);
  EXPECT_EQ(Reg(CmosRtc::kHours), 13);
  EXPECT_EQ(Reg(CmosRtc::kYear), 24);
  EXPECT_EQ(Reg(CmosRtc::kCentury), 20);
}

TEST_F(CmosRtcTest, TwelveHourMode) {
  SetReg(CmosRtc::kRegB, 0);                     // BCD, 12 h
  EXPECT_EQ(Reg(CmosRtc::kHours), 0x80 | 0x01);  // 1 PM
  host_ = Utc(2024, 2, 27, 0, 10, 0);
  EXPECT_EQ(Reg(CmosRtc::kHours), 0x12);  // 12 AM
  host_ = Utc(2024, 2, 27, 12, 10, 0);
  EXPECT_EQ(Reg(CmosRtc::kHours), 0x80 | 0x12);  // 12 PM
  // Writing 11 PM in 12 h mode sets 23:xx.
  SetReg(CmosRtc::kHours, 0x80 | 0x11);
  SetReg(CmosRtc::kRegB, CmosRtc::kB24Hour);
  EXPECT_EQ(Reg(CmosRtc::kHours), 0x23);
}

TEST_F(CmosRtcTest, AdvancesWithHostTime) {
  host_ += absl::Seconds(5);
  EXPECT_EQ(Reg(CmosRtc::kSeconds), 0x01);
  EXPECT_EQ(Reg(CmosRtc::kMinutes), 0x46);
  host_ += absl::Hours(24 * 3);
  EXPECT_EQ(Reg(CmosRtc::kDayOfMonth), 0x01);  // 2024 is a leap year
  EXPECT_EQ(Reg(CmosRtc::kMonth), 0x03);
}

TEST_F(CmosRtcTest, WritingTimeKeepsAnOffset) {
  SetReg(CmosRtc::kYear, 0x30);  // 2030, BCD
  EXPECT_EQ(Reg(CmosRtc::kYear), 0x30);
  EXPECT_EQ(Reg(CmosRtc::kMonth), 0x02);
  host_ += absl::Seconds(2);
  EXPECT_EQ(Reg(CmosRtc::kYear), 0x30) << "the offset stays";
  EXPECT_EQ(Reg(CmosRtc::kSeconds), 0x58);
  EXPECT_EQ(absl::ToCivilYear(rtc_.GuestTime(), absl::UTCTimeZone()).year(),
            2030);
}

TEST_F(CmosRtcTest, SetBitFreezesAndResumesFromWrittenTime) {
  // Linux's mc146818_set_time: SET, write the fields, clear SET.
  SetReg(CmosRtc::kRegB, CmosRtc::kBDefault | CmosRtc::kBSet);
  host_ += absl::Seconds(10);
  EXPECT_EQ(Reg(CmosRtc::kSeconds), 0x56) << "frozen while SET";
  SetReg(CmosRtc::kYear, 0x99);
  SetReg(CmosRtc::kCentury, 0x19);
  SetReg(CmosRtc::kMonth, 0x12);
  SetReg(CmosRtc::kDayOfMonth, 0x31);
  SetReg(CmosRtc::kHours, 0x23);
  SetReg(CmosRtc::kMinutes, 0x59);
  SetReg(CmosRtc::kSeconds, 0x58);
  host_ += absl::Seconds(10);
  EXPECT_EQ(Reg(CmosRtc::kSeconds), 0x58);
  EXPECT_EQ(Reg(CmosRtc::kYear), 0x99);
  EXPECT_FALSE(Reg(CmosRtc::kRegA) & CmosRtc::kAUip) << "no UIP while SET";
  SetReg(CmosRtc::kRegB, CmosRtc::kBDefault);
  host_ += absl::Seconds(3);  // 1999-12-31 23:59:58 + 3 s
  EXPECT_EQ(Reg(CmosRtc::kSeconds), 0x01);
  EXPECT_EQ(Reg(CmosRtc::kMinutes), 0x00);
  EXPECT_EQ(Reg(CmosRtc::kYear), 0x00);
  EXPECT_EQ(Reg(CmosRtc::kCentury), 0x20);
  EXPECT_EQ(Reg(CmosRtc::kMonth), 0x01);
}

TEST_F(CmosRtcTest, SetClearsUie) {
  SetReg(CmosRtc::kRegB, CmosRtc::kBDefault | CmosRtc::kBUie | CmosRtc::kBSet);
  EXPECT_EQ(Reg(CmosRtc::kRegB), CmosRtc::kBDefault | CmosRtc::kBSet);
}

TEST_F(CmosRtcTest, UipDuringTheLast244UsOfASecond) {
  host_ = Utc(2024, 2, 27, 13, 45, 56) + absl::Microseconds(999'800);
  EXPECT_TRUE(Reg(CmosRtc::kRegA) & CmosRtc::kAUip);
  EXPECT_EQ(Reg(CmosRtc::kRegA) & 0x7F, CmosRtc::kADefault);
  host_ = Utc(2024, 2, 27, 13, 45, 56) + absl::Microseconds(999'700);
  EXPECT_FALSE(Reg(CmosRtc::kRegA) & CmosRtc::kAUip);
  host_ = Utc(2024, 2, 27, 13, 45, 57);
  EXPECT_FALSE(Reg(CmosRtc::kRegA) & CmosRtc::kAUip);
  // Divider held in reset: no updates, no UIP.
  SetReg(CmosRtc::kRegA, 0x66);
  host_ = Utc(2024, 2, 27, 13, 45, 56) + absl::Microseconds(999'900);
  EXPECT_EQ(Reg(CmosRtc::kRegA), 0x66);
}

TEST_F(CmosRtcTest, UipIsReadOnly) {
  SetReg(CmosRtc::kRegA, 0xA6);
  host_ = Utc(2024, 2, 27, 13, 45, 56);
  EXPECT_EQ(Reg(CmosRtc::kRegA), 0x26);
}

TEST_F(CmosRtcTest, RegisterCFlagsClearOnRead) {
  Reg(CmosRtc::kRegC);
  EXPECT_EQ(Reg(CmosRtc::kRegC), 0) << "nothing happened since";
  host_ += absl::Seconds(1);
  EXPECT_EQ(Reg(CmosRtc::kRegC), CmosRtc::kCUf | CmosRtc::kCPf);
  EXPECT_EQ(Reg(CmosRtc::kRegC), 0);
  SetReg(CmosRtc::kRegB, CmosRtc::kBDefault | CmosRtc::kBUie);
  host_ += absl::Seconds(1);
  EXPECT_EQ(Reg(CmosRtc::kRegC),
            CmosRtc::kCIrqf | CmosRtc::kCUf | CmosRtc::kCPf);
  // Periodic only: 1024 Hz.
  host_ += absl::Milliseconds(2);
  EXPECT_EQ(Reg(CmosRtc::kRegC) & ~CmosRtc::kCUf, CmosRtc::kCPf);
}

TEST_F(CmosRtcTest, RegisterDIsReadOnly) {
  SetReg(CmosRtc::kRegD, 0);
  EXPECT_EQ(Reg(CmosRtc::kRegD), CmosRtc::kDValid);
}

TEST_F(CmosRtcTest, RamAndAlarmRegistersAreStorage) {
  for (uint8_t i : {uint8_t{CmosRtc::kSecondsAlarm}, uint8_t{0x0E},
                    uint8_t{0x40}, uint8_t{0x7F}}) {
    SetReg(i, static_cast<uint8_t>(i ^ 0xA5));
    EXPECT_EQ(Reg(i), i ^ 0xA5) << int{i};
  }
}

TEST_F(CmosRtcTest, IndexHasNmiBitAndIsWriteOnly) {
  rtc_.PortWrite(CmosRtc::kIndexPort, 1, 0x80 | 0x40);
  EXPECT_TRUE(rtc_.nmi_disabled());
  rtc_.PortWrite(CmosRtc::kDataPort, 1, 0x12);
  rtc_.PortWrite(CmosRtc::kIndexPort, 1, 0x40);
  EXPECT_FALSE(rtc_.nmi_disabled());
  EXPECT_EQ(rtc_.PortRead(CmosRtc::kDataPort, 1), 0x12u);
  EXPECT_EQ(rtc_.PortRead(CmosRtc::kIndexPort, 1), 0xFFu);
  EXPECT_EQ(rtc_.PortRead(CmosRtc::kDataPort, 2), 0xFFFFu);
}

TEST_F(CmosRtcTest, PersistentStateSurvivesARebuild) {
  SetReg(0x50, 0x42);
  SetReg(CmosRtc::kYear, 0x31);
  SetReg(CmosRtc::kRegB, CmosRtc::kB24Hour | CmosRtc::kBBinary);
  CmosRtc::Persistent saved = rtc_.Save();
  host_ += absl::Seconds(60);
  CmosRtc again(saved, [this] { return host_; });
  auto reg = [&](uint8_t i) {
    again.PortWrite(CmosRtc::kIndexPort, 1, i);
    return again.PortRead(CmosRtc::kDataPort, 1);
  };
  EXPECT_EQ(reg(0x50), 0x42u);
  EXPECT_EQ(reg(CmosRtc::kYear), 31u);
  EXPECT_EQ(reg(CmosRtc::kMinutes), 46u);
  EXPECT_EQ(reg(CmosRtc::kRegB), CmosRtc::kB24Hour | CmosRtc::kBBinary);
}

TEST_F(CmosRtcTest, GarbageWritesStillGiveAValidTime) {
  SetReg(CmosRtc::kMonth, 0xFF);
  SetReg(CmosRtc::kDayOfMonth, 0x00);
  SetReg(CmosRtc::kHours, 0xFF);
  const uint8_t month = Reg(CmosRtc::kMonth);
  EXPECT_GE(month, 0x01);
  EXPECT_LE(month, 0x12);
}

TEST(CmosRtcRealClockTest, StartsAtHostTime) {
  CmosRtc rtc;
  EXPECT_LT(absl::AbsDuration(rtc.GuestTime() - absl::Now()), absl::Seconds(5));
}

}  // namespace
}  // namespace vmwp
