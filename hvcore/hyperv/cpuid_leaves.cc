#include "hvcore/hyperv/cpuid_leaves.h"

#include <cstring>

#include "hvcore/hyperv/tlfs.h"

namespace hvcore::hyperv {
namespace {

uint32_t Signature(const char (&four)[5]) {
  uint32_t v;
  std::memcpy(&v, four, 4);
  return v;
}

}  // namespace

HypervFeatures ImplementedFeatures() {
  // Not advertised, because not implemented: VP runtime, synthetic timers,
  // the APIC MSRs / VP assist page, reset, stats, guest idle, XMM
  // hypercall input/output, partition ids, TLB-flush and IPI hypercalls.
  return HypervFeatures{
      .privileges_low = kPrivTimeRefCount | kPrivSynicRegs |
                        kPrivHypercallMsrs | kPrivVpIndex | kPrivReferenceTsc |
                        kPrivFrequencyMsrs,
      .privileges_high = kPrivPostMessages | kPrivSignalEvents,
      .misc = kFeatFrequencyMsrsAvailable | kFeatGuestCrashMsrsAvailable |
              kFeatSintPollingAvailable | kFeatHypercallMsrLockAvailable,
  };
}

std::vector<CpuidLeaf> BuildHypervCpuid(const HypervCpuidConfig& config) {
  std::vector<CpuidLeaf> leaves;
  for (uint32_t f = kCpuidVendorAndMax; f <= kCpuidMaxLeaf; ++f) {
    leaves.push_back(CpuidLeaf{.function = f});
  }
  auto leaf = [&](uint32_t f) -> CpuidLeaf& {
    return leaves[f - kCpuidVendorAndMax];
  };

  leaf(kCpuidVendorAndMax) = {kCpuidVendorAndMax, 0,
                              kCpuidMaxLeaf,      Signature("Micr"),
                              Signature("osof"),  Signature("t Hv")};
  leaf(kCpuidInterface).eax = kInterfaceSignatureHv1;

  CpuidLeaf& version = leaf(kCpuidVersion);
  version.eax = config.build_number;
  version.ebx = (uint32_t{config.major_version} << 16) | config.minor_version;

  const HypervFeatures features = ImplementedFeatures();
  CpuidLeaf& feat = leaf(kCpuidFeatures);
  feat.eax = features.privileges_low;
  feat.ebx = features.privileges_high;
  feat.edx = features.misc;

  // No TLB-flush or IPI hypercalls are recommended (we return
  // INVALID_HYPERCALL_CODE for them and Linux falls back to IPIs); AutoEOI is
  // deprecated because KVM's in-kernel LAPIC cannot end an interrupt on the
  // guest's behalf.
  CpuidLeaf& rec = leaf(kCpuidRecommendations);
  rec.eax =
      kRecDeprecateAutoEoi | (config.relaxed_timing ? kRecRelaxedTiming : 0);
  rec.ebx = kSpinlockRetriesNever;

  CpuidLeaf& limits = leaf(kCpuidLimits);
  limits.eax = config.max_vps;
  limits.ebx = config.max_vps;
  // 0x40000006 (hardware features in use) and 0x40000007-0x4000000A (root
  // CPU management, SVM, nested) stay zero: nothing to report for a child
  // partition that is not nested.
  return leaves;
}

}  // namespace hvcore::hyperv
