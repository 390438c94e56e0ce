#ifndef HVSTACK_VMWP_SANDBOX_SANDBOX_SPEC_H_
#define HVSTACK_VMWP_SANDBOX_SANDBOX_SPEC_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace sandbox {

// Fixed paths inside the worker's root. vmwp opens its files by these names
// after BuildMinimalRoot; MapIntoSandbox translates a host path.
inline constexpr char kInsideKernel[] = "/vm/kernel";
inline constexpr char kInsideInitrd[] = "/vm/initrd";
inline constexpr char kInsideDiskDir[] = "/vm/disks";
inline constexpr char kInsideRuntimeDir[] = "/run/vm";

// One file of the VM, bind-mounted into the root.
struct VmFile {
  std::string host_path;    // absolute, must exist
  std::string inside_path;  // absolute, under /vm
  bool writable = false;    // disks may be; kernel and initrd never are
};

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

// Everything the confinement steps need to know about one VM's worker.
struct SandboxSpec {
  std::string vm_id;  // the VM's uuid: names the cgroup
  uid_t uid = 0;      // from UidAllocator; never 0, never a real account
  gid_t gid = 0;
  std::vector<VmFile> files;  // kernel, initrd, disks
  std::string runtime_dir;    // host path; bind-mounted read-write
  ResourceLimits limits;
  // The net namespace is always new. A VM without network gets it empty;
  // with network, `netns_path` names a namespace vmms prepared (holding the
  // VM's tap device, Firecracker-jailer style) that the worker joins instead.
  bool has_network = false;
  std::string netns_path;
  uint64_t max_open_files = 256;  // RLIMIT_NOFILE
};

// Adds the kernel (and initrd, if non-empty) at their fixed inside paths.
void AddBootFiles(SandboxSpec& spec, const std::string& kernel_path,
                  const std::string& initrd_path);

// Checks the spec before anything is changed: non-root ids, absolute paths,
// inside paths under /vm, a runtime dir, sane limits.
absl::Status ValidateSpec(const SandboxSpec& spec);

// The path vmwp must use inside the sandbox for a host path the spec
// mentions (a VM file, or anything under the runtime dir); nullopt if the
// path is not visible inside.
std::optional<std::string> MapIntoSandbox(const SandboxSpec& spec,
                                          const std::string& host_path);

}  // namespace sandbox

#endif  // HVSTACK_VMWP_SANDBOX_SANDBOX_SPEC_H_
