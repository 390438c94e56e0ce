#ifndef HVSTACK_HVCORE_KVM_ABI_H_
#define HVSTACK_HVCORE_KVM_ABI_H_

// Corrections to <linux/kvm.h> for C++. Linux 6.1's UAPI headers (Debian 12)
// declare flexible arrays with __DECLARE_FLEX_ARRAY, which wraps them in a
// struct holding an empty struct; in C++ an empty struct has size 1, so e.g.
// sizeof(struct kvm_cpuid2) is 12 instead of 8, `entries` sits at offset 12
// instead of 8, and the ioctl numbers derived from the size
// (KVM_GET_SUPPORTED_CPUID, KVM_SET_CPUID2, KVM_GET_MSRS ...) are wrong: KVM
// answers EINVAL. hvcore uses these C-layout definitions instead. Anyone else
// issuing such ioctls from C++ must do the same.

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cstdint>

namespace hvcore::kvm_abi {

// The fixed part of struct kvm_cpuid2 as C lays it out; kvm_cpuid_entry2
// entries follow at offset 8.
struct Cpuid2Header {
  uint32_t nent;
  uint32_t padding;
};
static_assert(sizeof(Cpuid2Header) == 8);
static_assert(sizeof(kvm_cpuid_entry2) == 40);

inline constexpr unsigned long kGetSupportedCpuid =
    _IOWR(KVMIO, 0x05, Cpuid2Header);
inline constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, Cpuid2Header);
static_assert(kGetSupportedCpuid == 0xC008AE05ul);
static_assert(kSetCpuid2 == 0x4008AE90ul);
inline constexpr unsigned long kGetCpuid2 = _IOWR(KVMIO, 0x91, Cpuid2Header);
static_assert(kGetCpuid2 == 0xC008AE91ul);

// struct kvm_msrs: nmsrs, pad, then kvm_msr_entry entries (16 bytes each).
struct MsrsHeader {
  uint32_t nmsrs;
  uint32_t pad;
};
static_assert(sizeof(MsrsHeader) == 8);
static_assert(sizeof(kvm_msr_entry) == 16);
inline constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, MsrsHeader);
inline constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);
static_assert(kGetMsrs == 0xC008AE88ul);
static_assert(kSetMsrs == 0x4008AE89ul);

// struct kvm_msr_list: nmsrs, then uint32_t indices.
struct MsrListHeader {
  uint32_t nmsrs;
};
static_assert(sizeof(MsrListHeader) == 4);
inline constexpr unsigned long kGetMsrIndexList =
    _IOWR(KVMIO, 0x02, MsrListHeader);
inline constexpr unsigned long kGetMsrFeatureIndexList =
    _IOWR(KVMIO, 0x0a, MsrListHeader);
static_assert(kGetMsrIndexList == 0xC004AE02ul);
static_assert(kGetMsrFeatureIndexList == 0xC004AE0Aul);

// struct kvm_irq_routing: nr, flags, then kvm_irq_routing_entry entries.
struct IrqRoutingHeader {
  uint32_t nr;
  uint32_t flags;
};
static_assert(sizeof(IrqRoutingHeader) == 8);
static_assert(sizeof(kvm_irq_routing_entry) == 48);
inline constexpr unsigned long kSetGsiRouting =
    _IOW(KVMIO, 0x6a, IrqRoutingHeader);
static_assert(kSetGsiRouting == 0x4008AE6Aul);

// struct kvm_xsave: 4096 bytes of XSAVE area, then (KVM_GET_XSAVE2 only) as
// many more as KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) says; the ioctl numbers
// encode the fixed 4096.
struct XsaveHeader {
  uint32_t region[1024];
};
static_assert(sizeof(XsaveHeader) == 4096);
inline constexpr unsigned long kGetXsave = _IOR(KVMIO, 0xa4, XsaveHeader);
inline constexpr unsigned long kSetXsave = _IOW(KVMIO, 0xa5, XsaveHeader);
inline constexpr unsigned long kGetXsave2 = _IOR(KVMIO, 0xcf, XsaveHeader);
static_assert(kGetXsave == 0x9000AEA4ul);
static_assert(kSetXsave == 0x5000AEA5ul);
static_assert(kGetXsave2 == 0x9000AECFul);

// Fixed-size structures the save/restore path stores as bytes; their sizes
// are the UAPI's (no flexible arrays, so <linux/kvm.h> is right for these).
static_assert(sizeof(kvm_regs) == 144);
static_assert(sizeof(kvm_sregs) == 312);
static_assert(sizeof(kvm_fpu) == 416);
static_assert(sizeof(kvm_xcrs) == 392);
static_assert(sizeof(kvm_lapic_state) == 1024);
static_assert(sizeof(kvm_vcpu_events) == 64);
static_assert(sizeof(kvm_debugregs) == 128);
static_assert(sizeof(kvm_irqchip) == 520);
static_assert(sizeof(kvm_pit_state2) == 112);
static_assert(sizeof(kvm_clock_data) == 48);

}  // namespace hvcore::kvm_abi

#endif  // HVSTACK_HVCORE_KVM_ABI_H_
