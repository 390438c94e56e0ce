#ifndef HVSTACK_HVCORE_HYPERV_CPUID_LEAVES_H_
#define HVSTACK_HVCORE_HYPERV_CPUID_LEAVES_H_

// The Hyper-V CPUID leaves 0x40000000-0x4000000A. They advertise only what
// this package implements: a guest that trusts them (Linux does) must never
// reach an unimplemented path. The caller merges the entries into the VP's
// CPUID and must then drop KVM's own leaves altogether: Linux picks the
// hypervisor whose detect() returns the highest value, and that is the CPUID
// base -- KVM's leaves at 0x40000100 (kvm_detect() = 0x40000100) beat Hyper-V's
// at 0x40000000 (ms_hyperv_platform() = 0x40000000), so Linux would report
// "Hypervisor detected: KVM", skip hyperv_init() and never load hv_vmbus.

#include <cstdint>
#include <vector>

namespace hvcore::hyperv {

struct CpuidLeaf {
  uint32_t function;
  uint32_t index;  // always 0: none of these leaves has sub-leaves
  uint32_t eax, ebx, ecx, edx;
};

struct HypervCpuidConfig {
  uint32_t max_vps = 1;  // 0x40000005 EAX / EBX
  // Reported in 0x40000002. The default is the Windows Server 2016 hypervisor
  // (10.0.14393), a version guests have been tested against for years.
  uint32_t build_number = 14393;
  uint16_t major_version = 10;
  uint16_t minor_version = 0;
  // "Relaxed timing": tells the guest to not trust watchdog timeouts. Worth it
  // on slow hosts such as kvm_pvm, where guest time runs far behind.
  bool relaxed_timing = true;
};

// What 0x40000003 advertises, exposed for tests and for the VMM's log line.
struct HypervFeatures {
  uint32_t privileges_low;   // EAX
  uint32_t privileges_high;  // EBX
  uint32_t misc;             // EDX
};
HypervFeatures ImplementedFeatures();

// Leaves 0x40000000..0x4000000A, ascending, one entry each.
std::vector<CpuidLeaf> BuildHypervCpuid(const HypervCpuidConfig& config);

}  // namespace hvcore::hyperv

#endif  // HVSTACK_HVCORE_HYPERV_CPUID_LEAVES_H_
