#ifndef HVSTACK_HVCORE_HYPERV_MSR_RESULT_H_
#define HVSTACK_HVCORE_HYPERV_MSR_RESULT_H_

#include <cstdint>

namespace hvcore::hyperv {

// The answer to a guest RDMSR/WRMSR. `inject_gp`: the VMM completes the
// access with a #GP (KVM: kvm_run->msr.error = 1); the guest asked for
// something the TLFS forbids (reserved bits, read-only MSR, a page outside
// RAM, an MSR we do not implement). Otherwise `value` is the RDMSR result.
struct MsrResult {
  bool inject_gp = false;
  uint64_t value = 0;

  static MsrResult Ok(uint64_t value = 0) { return {false, value}; }
  static MsrResult Gp() { return {true, 0}; }
};

}  // namespace hvcore::hyperv

#endif  // HVSTACK_HVCORE_HYPERV_MSR_RESULT_H_
