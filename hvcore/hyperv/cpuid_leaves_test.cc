#include "hvcore/hyperv/cpuid_leaves.h"

#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "hvcore/hyperv/tlfs.h"

namespace hvcore::hyperv {
namespace {

const CpuidLeaf& Find(const std::vector<CpuidLeaf>& leaves, uint32_t f) {
  for (const CpuidLeaf& l : leaves) {
    if (l.function == f) return l;
  }
  ADD_FAILURE() << "no leaf " << std::hex << f;
  static CpuidLeaf none{};
  return none;
}

std::string Chars(uint32_t v) {
  return std::string(reinterpret_cast<char*>(&v), 4);
}

TEST(HypervCpuidTest, LeavesFromVendorToNested) {
  const std::vector<CpuidLeaf> leaves = BuildHypervCpuid({});
  ASSERT_EQ(leaves.size(), 11u);
  for (size_t i = 0; i < leaves.size(); ++i) {
    EXPECT_EQ(leaves[i].function, 0x40000000u + i);
    EXPECT_EQ(leaves[i].index, 0u);
  }
}

TEST(HypervCpuidTest, VendorAndInterface) {
  const std::vector<CpuidLeaf> leaves = BuildHypervCpuid({});
  const CpuidLeaf& vendor = Find(leaves, 0x40000000);
  EXPECT_EQ(vendor.eax, 0x4000000Au);
  // Linux requires 0x40000005 <= max leaf <= 0x4000FFFF.
  EXPECT_GE(vendor.eax, 0x40000005u);
  EXPECT_EQ(Chars(vendor.ebx) + Chars(vendor.ecx) + Chars(vendor.edx),
            "Microsoft Hv");
  EXPECT_EQ(vendor.ebx, 0x7263694Du);  // the TLFS spells the words out
  EXPECT_EQ(vendor.ecx, 0x666F736Fu);
  EXPECT_EQ(vendor.edx, 0x76482074u);
  EXPECT_EQ(Chars(Find(leaves, 0x40000001).eax), "Hv#1");
}

TEST(HypervCpuidTest, Version) {
  HypervCpuidConfig config;
  config.build_number = 20348;
  config.major_version = 10;
  config.minor_version = 1;
  const CpuidLeaf& v = Find(BuildHypervCpuid(config), 0x40000002);
  EXPECT_EQ(v.eax, 20348u);
  EXPECT_EQ(v.ebx, 0x000A0001u);
}

TEST(HypervCpuidTest, AdvertisesExactlyWhatIsImplemented) {
  const CpuidLeaf& f = Find(BuildHypervCpuid({}), 0x40000003);
  // What Linux's ms_hyperv_platform() requires to detect Hyper-V.
  EXPECT_TRUE(f.eax & kPrivHypercallMsrs);
  EXPECT_TRUE(f.eax & kPrivVpIndex);
  EXPECT_EQ(f.eax, kPrivTimeRefCount | kPrivSynicRegs | kPrivHypercallMsrs |
                       kPrivVpIndex | kPrivReferenceTsc | kPrivFrequencyMsrs);
  EXPECT_FALSE(f.eax & kPrivSyntheticTimers);
  EXPECT_FALSE(f.eax & kPrivApicMsrs);
  EXPECT_FALSE(f.eax & kPrivVpRuntime);
  EXPECT_EQ(f.ebx, kPrivPostMessages | kPrivSignalEvents);
  EXPECT_EQ(f.ecx, 0u);
  EXPECT_EQ(f.edx, kFeatFrequencyMsrsAvailable | kFeatGuestCrashMsrsAvailable |
                       kFeatSintPollingAvailable |
                       kFeatHypercallMsrLockAvailable);
  EXPECT_EQ(f.edx, 0x00060500u);  // bits 8, 10, 17, 18
}

TEST(HypervCpuidTest, RecommendationsAndLimits) {
  HypervCpuidConfig config;
  config.max_vps = 8;
  const std::vector<CpuidLeaf> leaves = BuildHypervCpuid(config);
  const CpuidLeaf& rec = Find(leaves, 0x40000004);
  EXPECT_EQ(rec.eax, kRecDeprecateAutoEoi | kRecRelaxedTiming);
  EXPECT_EQ(rec.ebx, 0xFFFFFFFFu);  // never HvNotifyLongSpinWait
  const CpuidLeaf& limits = Find(leaves, 0x40000005);
  EXPECT_EQ(limits.eax, 8u);
  EXPECT_EQ(limits.ebx, 8u);
  EXPECT_EQ(limits.ecx, 0u);
  for (uint32_t f = 0x40000006; f <= 0x4000000A; ++f) {
    const CpuidLeaf& l = Find(leaves, f);
    EXPECT_EQ(l.eax | l.ebx | l.ecx | l.edx, 0u) << std::hex << f;
  }
  config.relaxed_timing = false;
  EXPECT_EQ(Find(BuildHypervCpuid(config), 0x40000004).eax,
            kRecDeprecateAutoEoi);
}

}  // namespace
}  // namespace hvcore::hyperv
