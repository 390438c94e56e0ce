#include "vmwp/acpi/fadt.h"

#include "gtest/gtest.h"
#include "vmwp/acpi/sdt.h"
#include "vmwp/acpi/table_test_util.h"

namespace vmwp::acpi {
namespace {

// Field offsets from the ACPI 6.x FADT table (5.2.9), written out independently
// of fadt.cc.
constexpr size_t kFirmwareCtrl = 36;
constexpr size_t kDsdt = 40;
constexpr size_t kSciInt = 46;
constexpr size_t kSmiCmd = 48;
constexpr size_t kPm1aEvtBlk = 56;
constexpr size_t kPm1aCntBlk = 64;
constexpr size_t kPmTmrBlk = 76;
constexpr size_t kPm1EvtLen = 88;
constexpr size_t kPm1CntLen = 89;
constexpr size_t kIapcBootArch = 109;
constexpr size_t kFlags = 112;
constexpr size_t kResetReg = 116;
constexpr size_t kResetValue = 128;
constexpr size_t kMinorVersion = 131;
constexpr size_t kXFirmwareCtrl = 132;
constexpr size_t kXDsdt = 140;
constexpr size_t kXPm1aEvtBlk = 148;
constexpr size_t kXPm1aCntBlk = 172;
constexpr size_t kSleepControlReg = 244;

TEST(FadtTest, HeaderLengthAndChecksum) {
  const Bytes fadt = BuildFadt(AcpiConfig{}, 0xE0040, 0xE0200);
  ASSERT_TRUE(IsValidSdt(fadt, "FACP"));
  EXPECT_EQ(fadt.size(), 276u);
  EXPECT_EQ(fadt[kSdtRevisionOffset], 6);
  EXPECT_EQ(fadt[kMinorVersion], 0);
}

TEST(FadtTest, PointsAtFacsAndDsdt) {
  const Bytes fadt = BuildFadt(AcpiConfig{}, 0xE0040, 0xE0200);
  EXPECT_EQ(U32At(fadt, kFirmwareCtrl), 0xE0040u);
  EXPECT_EQ(U64At(fadt, kXFirmwareCtrl), 0u)
      << "only one FACS pointer may be set";
  EXPECT_EQ(U32At(fadt, kDsdt), 0xE0200u);
  EXPECT_EQ(U64At(fadt, kXDsdt), 0xE0200u);
}

TEST(FadtTest, LegacyPm1aBlocksAndSci) {
  const Bytes fadt = BuildFadt(AcpiConfig{}, 0, 0);
  EXPECT_EQ(U16At(fadt, kSciInt), 9);
  EXPECT_EQ(U32At(fadt, kSmiCmd), 0u) << "always in ACPI mode";
  EXPECT_EQ(U32At(fadt, kPm1aEvtBlk), 0x600u);
  EXPECT_EQ(U32At(fadt, kPm1aCntBlk), 0x604u);
  EXPECT_EQ(U32At(fadt, kPmTmrBlk), 0u);
  EXPECT_EQ(fadt[kPm1EvtLen], 4);
  EXPECT_EQ(fadt[kPm1CntLen], 2);
  // The 64-bit forms agree with the 32-bit ones: I/O space, 8 bits per byte of
  // block.
  EXPECT_EQ(fadt[kXPm1aEvtBlk], kGasSystemIo);
  EXPECT_EQ(fadt[kXPm1aEvtBlk + 1], 32);
  EXPECT_EQ(U64At(fadt, kXPm1aEvtBlk + 4), 0x600u);
  EXPECT_EQ(fadt[kXPm1aCntBlk], kGasSystemIo);
  EXPECT_EQ(fadt[kXPm1aCntBlk + 1], 16);
  EXPECT_EQ(U64At(fadt, kXPm1aCntBlk + 4), 0x604u);
  EXPECT_EQ(U64At(fadt, kSleepControlReg + 4), 0u);
}

TEST(FadtTest, FlagsAndResetRegister) {
  const Bytes fadt = BuildFadt(AcpiConfig{}, 0, 0);
  const uint32_t flags = U32At(fadt, kFlags);
  EXPECT_EQ(flags & kFadtHwReducedAcpi, 0u);
  EXPECT_NE(flags & kFadtResetRegSup, 0u);
  EXPECT_NE(flags & kFadtWbinvd, 0u);
  EXPECT_EQ(fadt[kResetReg], kGasSystemIo);
  EXPECT_EQ(fadt[kResetReg + 1], 8);
  EXPECT_EQ(U64At(fadt, kResetReg + 4), 0x64u);
  EXPECT_EQ(fadt[kResetValue], 0xFE);
}

TEST(FadtTest, CenturyRegisterOnlyWithTheLegacyRtc) {
  constexpr size_t kCentury = 108;
  AcpiConfig config;
  EXPECT_EQ(BuildFadt(config, 0, 0)[kCentury], kCmosCenturyIndex);
  config.legacy_devices = false;
  EXPECT_EQ(BuildFadt(config, 0, 0)[kCentury], 0);
}

TEST(FadtTest, BootArchFollowsLegacyDevices) {
  AcpiConfig config;
  EXPECT_EQ(U16At(BuildFadt(config, 0, 0), kIapcBootArch),
            kBootArchLegacyDevices | kBootArch8042 | kBootArchVgaNotPresent);
  config.legacy_devices = false;
  EXPECT_EQ(U16At(BuildFadt(config, 0, 0), kIapcBootArch),
            kBootArchVgaNotPresent);
}

TEST(FadtTest, FollowsTheConfiguredPorts) {
  AcpiConfig config;
  config.pm1a_event_port = 0xB000;
  config.pm1a_control_port = 0xB004;
  config.sci_irq = 10;
  config.reset_port = 0xCF9;
  config.reset_value = 0x06;
  const Bytes fadt = BuildFadt(config, 0, 0);
  EXPECT_EQ(U32At(fadt, kPm1aEvtBlk), 0xB000u);
  EXPECT_EQ(U32At(fadt, kPm1aCntBlk), 0xB004u);
  EXPECT_EQ(U16At(fadt, kSciInt), 10);
  EXPECT_EQ(U64At(fadt, kResetReg + 4), 0xCF9u);
  EXPECT_EQ(fadt[kResetValue], 0x06);
}

TEST(FacsTest, SignatureLengthVersion) {
  const Bytes facs = BuildFacs();
  ASSERT_EQ(facs.size(), kFacsSize);
  EXPECT_EQ(std::string(facs.begin(), facs.begin() + 4), "FACS");
  EXPECT_EQ(U32At(facs, 4), 64u);
  EXPECT_EQ(facs[32], 2);
}

}  // namespace
}  // namespace vmwp::acpi
