#ifndef HVSTACK_HVCORE_CPUID_H_
#define HVSTACK_HVCORE_CPUID_H_

// The CPUID a partition's VPs see, built from KVM_GET_SUPPORTED_CPUID:
//  - what this host cannot run in a guest is hidden (see FilterGuestCpuid);
//  - the hypervisor bit is set;
//  - the topology matches the VP count: one package, one thread per core, N
//    cores, APIC id = VP index (leaf 1, leaf 4 / 0xB / 0x1F for Intel-style
//    vendors, 0x80000001 CmpLegacy / 0x80000008 ECX / 0x8000001E for AMD-style
//    vendors; leaves 0xB / 0x1F are filled for both when KVM lists them);
//  - KVM's paravirtual leaves ("KVMKVMKVM", features incl. kvm-clock) sit at a
//    configurable base, with a VMware-style timing leaf at base + 0x10 (TSC
//    and APIC bus frequency in kHz).

#include <linux/kvm.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace hvcore {

// Where KVM's paravirtual leaves go by default. The Hyper-V work will put
// Hyper-V's leaves here and move KVM's to kKvmCpuidBaseBehindHyperV; Linux
// scans 0x40000000..0x4000ff00 in steps of 0x100 for "KVMKVMKVM".
inline constexpr uint32_t kDefaultKvmCpuidBase = 0x40000000;
inline constexpr uint32_t kKvmCpuidBaseBehindHyperV = 0x40000100;

// KVM's APIC timer runs at 1 GHz (one tick per nanosecond).
inline constexpr uint32_t kKvmApicBusKhz = 1000000;

struct CpuidConfig {
  uint32_t vcpu_count = 1;
  // False: no KVM paravirtual leaves at all (the Hyper-V interface replaces
  // them, see PartitionOptions::hyperv); kvm_leaf_base and tsc_khz are then
  // unused.
  bool kvm_leaves = true;
  uint32_t kvm_leaf_base = kDefaultKvmCpuidBase;
  // 0: no timing leaf.
  uint32_t tsc_khz = 0;
};

enum class CpuVendor { kIntel, kAmd, kOther };
// From leaf 0 (GenuineIntel; AuthenticAMD or HygonGenuine); kOther if absent.
CpuVendor GuestCpuVendor(std::span<const kvm_cpuid_entry2> cpuid);

// KVM's supported CPUID with the features this host cannot run removed: CX16,
// the XSAVE family (XSAVE/OSXSAVE, leaf 0xD) and everything whose state
// needs XSAVE (AVX*, FMA, F16C, AMX, MPX, PKU, CET, XOP/FMA4, AVX10); sets the
// hypervisor bit. Topology and paravirtual leaves are left as they are.
std::vector<kvm_cpuid_entry2> FilterGuestCpuid(
    std::vector<kvm_cpuid_entry2> supported);

// The table shared by every VP (APIC-id fields are those of VP 0):
// FilterGuestCpuid + topology for config.vcpu_count + KVM leaves at
// config.kvm_leaf_base (their paravirtual features filtered, see cpuid.cc).
std::vector<kvm_cpuid_entry2> BuildGuestCpuid(
    std::span<const kvm_cpuid_entry2> supported, const CpuidConfig& config);

// Sets the per-VP fields (initial APIC id in leaf 1 EBX[31:24], x2APIC id in
// 0xB/0x1F EDX, extended APIC id in 0x8000001E) for VP `index`.
void SetCpuidApicId(std::vector<kvm_cpuid_entry2>& cpuid, uint32_t index);

// Features hvstack hides (FilterGuestCpuid) that are set in `effective` (what
// KVM kept, see VirtualProcessor::GetCpuid), by name: e.g. {"XSAVE", "AVX",
// "leaf 0xD"}. Empty when the host honoured the filter.
std::vector<std::string> HiddenFeaturesTheHostKept(
    std::span<const kvm_cpuid_entry2> effective);

// Whether a guest that ran with `saved` can go on with `current` (a restore,
// issue 14): the same leaves, indexes and register values. FailedPrecondition
// naming the first difference, e.g. "CPUID leaf 0x7 index 0 EBX: the saved
// guest saw 0x..., this host gives 0x...", or a leaf only one side has.
absl::Status CompareCpuid(std::span<const kvm_cpuid_entry2> saved,
                          std::span<const kvm_cpuid_entry2> current);

// Number of bits needed to hold n-1 (0 for n <= 1): the width of the core
// field of the APIC id.
uint32_t ApicIdBits(uint32_t n);

}  // namespace hvcore

#endif  // HVSTACK_HVCORE_CPUID_H_
