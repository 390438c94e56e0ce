#ifndef HVSTACK_VMMS_SANDBOX_RESOURCE_LIMITS_H_
#define HVSTACK_VMMS_SANDBOX_RESOURCE_LIMITS_H_

#include <cstdint>

namespace sandbox {

// What cgroup limits a VM gets. Derived from the VM's config by
// LimitsForVm, so vmms and tests agree on the arithmetic.
struct ResourceLimits {
  uint64_t memory_bytes = 0;  // guest RAM + overhead budget
  uint32_t pids_max = 0;      // threads + processes in the cgroup
  uint32_t cpu_quota_us = 0;  // per cpu_period_us; 0 = unlimited
  uint32_t cpu_period_us = 100000;
};

// Extra memory the worker may use beyond guest RAM: vmwp's heap, gRPC, the
// 1 MiB console ring, page tables and KVM's per-vCPU state. Measured vmwp
// RSS is far below this; the budget exists so that a guest-driven leak is
// stopped by the cgroup, not by the host's OOM killer.
inline constexpr uint64_t kDefaultOverheadBytes = 256ull << 20;
// vCPU threads + device threads + gRPC's pool (it grows under load).
inline constexpr uint32_t kBasePids = 64;

ResourceLimits LimitsForVm(uint64_t guest_memory_bytes, uint32_t vcpus,
                           uint64_t overhead_bytes = kDefaultOverheadBytes);

}  // namespace sandbox

#endif  // HVSTACK_VMMS_SANDBOX_RESOURCE_LIMITS_H_
