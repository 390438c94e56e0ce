#include "hvcore/cpuid.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace hvcore {
namespace {

kvm_cpuid_entry2 E(uint32_t function, uint32_t index, uint32_t eax,
                   uint32_t ebx, uint32_t ecx, uint32_t edx) {
  kvm_cpuid_entry2 e{};
  e.function = function;
  e.index = index;
  e.eax = eax;
  e.ebx = ebx;
  e.ecx = ecx;
  e.edx = edx;
  return e;
}

kvm_cpuid_entry2 Vendor(const char* v) {
  kvm_cpuid_entry2 e = E(0, 0, 0x1F, 0, 0, 0);
  std::memcpy(&e.ebx, v, 4);
  std::memcpy(&e.edx, v + 4, 4);
  std::memcpy(&e.ecx, v + 8, 4);
  return e;
}

// A trimmed copy of what this project's build hosts report (GenuineIntel
// under kvm_pvm), plus AMD-only leaves.
std::vector<kvm_cpuid_entry2> Supported(const char* vendor) {
  return {
      Vendor(vendor),
      E(1, 0, 0xa0671, 0x01020800, 0x81202000 | (1u << 26) | (1u << 28),
        0x0f8bfbff),
      E(4, 0, 0x04000121, 0, 0, 0),
      E(4, 3, 0x04004163, 0, 0, 0),
      E(0xB, 0, 0, 0, 0, 1),
      E(0xD, 0, 0xe7, 0, 0, 0),
      E(0x1F, 0, 0, 0, 0, 1),
      E(0x40000000, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d),
      E(0x40000001, 0, 0x01007efb | (1u << 15) | (1u << 16), 0, 0, 0),
      E(0x80000001, 0, 0, 0, 0x101 | (1u << 11), 0),
      E(0x80000008, 0, 0x3930, 0, 0, 0),
  };
}

const kvm_cpuid_entry2* Find(const std::vector<kvm_cpuid_entry2>& c, uint32_t f,
                             uint32_t i = 0) {
  for (const auto& e : c)
    if (e.function == f && e.index == i) return &e;
  return nullptr;
}

TEST(CpuidTest, ApicIdBits) {
  EXPECT_EQ(ApicIdBits(1), 0u);
  EXPECT_EQ(ApicIdBits(2), 1u);
  EXPECT_EQ(ApicIdBits(3), 2u);
  EXPECT_EQ(ApicIdBits(4), 2u);
  EXPECT_EQ(ApicIdBits(5), 3u);
}

TEST(CpuidTest, TopologyMatchesVcpuCountIntel) {
  std::vector<kvm_cpuid_entry2> c =
      BuildGuestCpuid(Supported("GenuineIntel"), {.vcpu_count = 4});
  ASSERT_EQ(GuestCpuVendor(c), CpuVendor::kIntel);
  const kvm_cpuid_entry2* l1 = Find(c, 1);
  ASSERT_NE(l1, nullptr);
  EXPECT_EQ((l1->ebx >> 16) & 0xFF, 4u) << "logical processor count";
  EXPECT_EQ(l1->ebx >> 24, 0u) << "VP 0's APIC id";
  EXPECT_NE(l1->edx & (1u << 28), 0u) << "HTT";
  EXPECT_NE(l1->ecx & (1u << 31), 0u) << "hypervisor";
  EXPECT_EQ(l1->ecx & (1u << 13), 0u) << "CX16 hidden";
  EXPECT_EQ(l1->ecx & (1u << 26), 0u) << "XSAVE hidden";
  EXPECT_EQ(l1->ecx & (1u << 28), 0u) << "AVX hidden";
  EXPECT_EQ(Find(c, 0xD), nullptr) << "leaf 0xD dropped";
  // Leaf 4: cores per package - 1 (power of two) and L3 shared by all.
  EXPECT_EQ(Find(c, 4, 0)->eax >> 26, 3u);
  EXPECT_EQ((Find(c, 4, 0)->eax >> 14) & 0xFFF, 0u) << "L1 per core";
  EXPECT_EQ((Find(c, 4, 3)->eax >> 14) & 0xFFF, 3u) << "L3 per package";
  for (uint32_t leaf : {0xBu, 0x1Fu}) {
    const kvm_cpuid_entry2* smt = Find(c, leaf, 0);
    const kvm_cpuid_entry2* core = Find(c, leaf, 1);
    const kvm_cpuid_entry2* end = Find(c, leaf, 2);
    ASSERT_NE(smt, nullptr);
    ASSERT_NE(core, nullptr);
    ASSERT_NE(end, nullptr);
    EXPECT_EQ(smt->ebx, 1u);
    EXPECT_EQ((smt->ecx >> 8) & 0xFF, 1u) << "SMT level";
    EXPECT_EQ(core->eax & 0x1F, 2u) << "shift to the package id";
    EXPECT_EQ(core->ebx, 4u);
    EXPECT_EQ((core->ecx >> 8) & 0xFF, 2u) << "core level";
    EXPECT_EQ((end->ecx >> 8) & 0xFF, 0u) << "end of levels";
  }
  // AMD leaves are left alone on Intel.
  EXPECT_EQ(Find(c, 0x80000008)->ecx, 0u);
  EXPECT_EQ(Find(c, 0x80000001)->ecx & (1u << 11), 0u) << "XOP hidden";
}

TEST(CpuidTest, TopologyMatchesVcpuCountAmd) {
  std::vector<kvm_cpuid_entry2> c =
      BuildGuestCpuid(Supported("AuthenticAMD"), {.vcpu_count = 3});
  ASSERT_EQ(GuestCpuVendor(c), CpuVendor::kAmd);
  EXPECT_EQ((Find(c, 1)->ebx >> 16) & 0xFF, 3u);
  EXPECT_NE(Find(c, 0x80000001)->ecx & (1u << 1), 0u) << "CmpLegacy";
  EXPECT_EQ(Find(c, 0x80000008)->ecx & 0xFF, 2u) << "NC = cores - 1";
  EXPECT_EQ((Find(c, 0x80000008)->ecx >> 12) & 0xF, 2u) << "ApicIdCoreIdSize";
  EXPECT_EQ(Find(c, 0xB, 1)->ebx, 3u);
}

TEST(CpuidTest, SingleVpHasNoHtt) {
  std::vector<kvm_cpuid_entry2> c =
      BuildGuestCpuid(Supported("AuthenticAMD"), {.vcpu_count = 1});
  EXPECT_EQ((Find(c, 1)->ebx >> 16) & 0xFF, 1u);
  EXPECT_EQ(Find(c, 1)->edx & (1u << 28), 0u);
  EXPECT_EQ(Find(c, 0x80000001)->ecx & (1u << 1), 0u);
}

TEST(CpuidTest, PerVpApicIds) {
  std::vector<kvm_cpuid_entry2> c =
      BuildGuestCpuid(Supported("GenuineIntel"), {.vcpu_count = 4});
  SetCpuidApicId(c, 3);
  EXPECT_EQ(Find(c, 1)->ebx >> 24, 3u);
  EXPECT_EQ(Find(c, 0xB, 0)->edx, 3u);
  EXPECT_EQ(Find(c, 0xB, 1)->edx, 3u);
  EXPECT_EQ(Find(c, 0x1F, 2)->edx, 3u);
}

TEST(CpuidTest, KvmLeavesAtConfiguredBaseWithTimingLeaf) {
  std::vector<kvm_cpuid_entry2> c = BuildGuestCpuid(
      Supported("GenuineIntel"),
      {.vcpu_count = 2, .kvm_leaf_base = 0x40000100, .tsc_khz = 2100000});
  EXPECT_EQ(Find(c, 0x40000000), nullptr) << "left free for Hyper-V";
  const kvm_cpuid_entry2* base = Find(c, 0x40000100);
  ASSERT_NE(base, nullptr);
  EXPECT_EQ(base->ebx, 0x4b4d564bu) << "KVMK";
  EXPECT_EQ(base->eax, 0x40000110u) << "highest leaf: the timing leaf";
  const kvm_cpuid_entry2* features = Find(c, 0x40000101);
  ASSERT_NE(features, nullptr);
  EXPECT_NE(features->eax & (1u << 3), 0u) << "kvm-clock (CLOCKSOURCE2)";
  EXPECT_NE(features->eax & (1u << 24), 0u) << "kvm-clock stable bit";
  EXPECT_EQ(features->eax & (1u << 15), 0u) << "MSI_EXT_DEST_ID filtered";
  EXPECT_EQ(features->eax & (1u << 16), 0u) << "HC_MAP_GPA_RANGE filtered";
  const kvm_cpuid_entry2* timing = Find(c, 0x40000110);
  ASSERT_NE(timing, nullptr);
  EXPECT_EQ(timing->eax, 2100000u) << "TSC kHz";
  EXPECT_EQ(timing->ebx, kKvmApicBusKhz);
}

TEST(CpuidTest, NoKvmLeavesWhenHyperVReplacesThem) {
  std::vector<kvm_cpuid_entry2> c = BuildGuestCpuid(
      Supported("GenuineIntel"),
      {.vcpu_count = 2, .kvm_leaves = false, .tsc_khz = 2100000});
  for (const kvm_cpuid_entry2& e : c) {
    EXPECT_FALSE(e.function >= 0x40000000 && e.function <= 0x4FFFFFFF)
        << std::hex << e.function;
  }
  EXPECT_NE(Find(c, 1)->ecx & (1u << 31), 0u) << "hypervisor bit kept";
}

TEST(CpuidTest, NoTimingLeafWithoutTscFrequency) {
  std::vector<kvm_cpuid_entry2> c =
      BuildGuestCpuid(Supported("GenuineIntel"), {.vcpu_count = 1});
  EXPECT_EQ(Find(c, 0x40000000)->eax, 0x40000001u);
  EXPECT_EQ(Find(c, 0x40000010), nullptr);
}

}  // namespace
}  // namespace hvcore
