#ifndef HVSTACK_HVCORE_HYPERV_KVM_GLUE_H_
#define HVSTACK_HVCORE_HYPERV_KVM_GLUE_H_

// The mechanical half of the integration: conversions between KVM's structs
// (kvm_run exits, kvm_regs, kvm_sregs, the MSR filter, CPUID entries, MSIs)
// and this package. Still no ioctls -- the VMM issues them with what these
// functions fill in -- so it is tested without /dev/kvm, and
// kvm_trap_smoke_test uses it against the real thing. A separate target from
// the core library, which does not know KVM at all.

#include <linux/kvm.h>

#include <array>
#include <cstdint>
#include <memory>

#include "hvcore/hyperv/cpuid_leaves.h"
#include "hvcore/hyperv/hv_partition.h"
#include "hvcore/hyperv/tlfs.h"

namespace hvcore::hyperv::kvm {

// KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR) args[0]: exits for filtered
// MSRs only (unknown MSRs keep KVM's own #GP).
inline constexpr uint64_t kUserSpaceMsrReasons = KVM_MSR_EXIT_REASON_FILTER;

// The KVM_X86_SET_MSR_FILTER argument: default allow, one range
// kMsrRangeBase..+kMsrRangeCount denied for reads and writes (= exits to
// userspace). `filter` points into `bitmap`; keep the object alive and
// unmoved until the ioctl returns.
struct MsrFilter {
  std::array<uint8_t, kMsrRangeCount / 8> bitmap{};  // all zero: deny
  kvm_msr_filter filter{};
};
std::unique_ptr<MsrFilter> MakeMsrFilter();

// A KVM_EXIT_X86_RDMSR / KVM_EXIT_X86_WRMSR for the synthetic range on VP
// `vp_index`: calls the partition and fills run.msr.data / run.msr.error.
// Returns false, touching nothing, for any other exit.
bool CompleteMsrExit(HvPartition& partition, uint32_t vp_index, kvm_run& run);

// True for a KVM_EXIT_IO that is the hypercall page's trap: a single 4-byte
// OUT to the partition's hypercall port. (Other accesses to the port are not
// hypercalls: the VMM answers them like an unclaimed port.)
bool IsHypercallTrap(const HvPartition& partition, const kvm_run& run);

// Runs the hypercall for a trap. Write `regs` back with KVM_SET_REGS (RAX and
// RDX change, RIP stays: KVM skips the OUT on re-entry), or inject #UD.
struct TrapCompletion {
  bool inject_ud = false;
  kvm_regs regs{};
};
TrapCompletion CompleteHypercallTrap(HvPartition& partition, uint32_t vp_index,
                                     const kvm_regs& regs,
                                     const kvm_sregs& sregs);

// CPL from CS, 64-bit mode from EFER.LMA and CS.L.
HypercallCaller CallerFromSregs(const kvm_sregs& sregs);

kvm_cpuid_entry2 ToKvmCpuidEntry(const CpuidLeaf& leaf);

// The KVM_SIGNAL_MSI for a SINT: fixed delivery, edge, physical destination
// `apic_id`. IDs above 255 go in address_hi[31:8], which KVM honours once
// KVM_CAP_X2APIC_API is enabled.
kvm_msi SintMsi(uint32_t apic_id, uint8_t vector);

}  // namespace hvcore::hyperv::kvm

#endif  // HVSTACK_HVCORE_HYPERV_KVM_GLUE_H_
