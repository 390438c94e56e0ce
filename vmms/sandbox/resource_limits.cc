#include "vmms/sandbox/resource_limits.h"

namespace sandbox {

ResourceLimits LimitsForVm(uint64_t guest_memory_bytes, uint32_t vcpus,
                           uint64_t overhead_bytes) {
  ResourceLimits limits;
  limits.memory_bytes = guest_memory_bytes + overhead_bytes;
  limits.pids_max = kBasePids + 2 * vcpus;
  // One full host CPU per vCPU: a guest can keep its vCPUs busy but cannot
  // starve the host with the worker's other threads on top.
  limits.cpu_quota_us = vcpus * limits.cpu_period_us;
  return limits;
}

}  // namespace sandbox
