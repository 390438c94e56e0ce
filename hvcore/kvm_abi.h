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

}  // namespace hvcore::kvm_abi

#endif  // HVSTACK_HVCORE_KVM_ABI_H_
