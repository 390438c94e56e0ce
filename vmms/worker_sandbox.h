#ifndef HVSTACK_VMMS_WORKER_SANDBOX_H_
#define HVSTACK_VMMS_WORKER_SANDBOX_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "proto/hvstack/v1/vm.pb.h"
#include "vmms/runtime_paths.h"
#include "vmms/sandbox/cgroup.h"
#include "vmms/sandbox/netns_pool.h"
#include "vmms/sandbox/resource_limits.h"
#include "vmms/sandbox/uid_allocator.h"
#include "vmms/vm_store.h"

namespace vmms {

// vmms's half of the workers' sandbox (vmms/sandbox/README.md,
// "INTEGRATION"): set up once at start, then used for every worker start.
class SandboxHost {
 public:
  // Reads the account databases (UidAllocator), detects the cgroup layout
  // (v1 on these hosts) and starts a pool of 2 empty net namespaces.
  // FAILED_PRECONDITION saying what is missing (no cgroup controllers, ...).
  static absl::StatusOr<std::unique_ptr<SandboxHost>> Create();

  // What one worker start needs.
  struct Prepared {
    sandbox::Identity identity;
    sandbox::ResourceLimits limits;
    sandbox::VmCgroup cgroup;
  };
  // For a start of `vm`: its uid slot (assigned and stored on the first
  // start), its runtime dir (mode 0700) and the files in it owned by its
  // uid, and its cgroup with LimitsForVm. FAILED_PRECONDITION naming the
  // step and object on failure.
  absl::StatusOr<Prepared> Prepare(VmStore& store, const Vm& vm,
                                   const RuntimePaths& paths);

  // The identity of a VM's slot, for display (`vmctl show`); nullopt before
  // its first sandboxed start.
  std::optional<sandbox::Identity> IdentityOf(uint32_t slot) const;

  // After the worker of `uuid` was reaped: "out of memory (cgroup limit N
  // MiB)" when its cgroup recorded an OOM kill, else nullopt. Then removes
  // the cgroup (also what reconcile does for VMs recorded Off).
  std::optional<std::string> OutOfMemory(const std::string& uuid) const;
  void RemoveCgroup(const std::string& uuid) const;
  // Puts a started worker into its VM's cgroup (all controllers).
  absl::Status JoinCgroup(const std::string& uuid, pid_t pid) const;

  absl::StatusOr<base::ScopedFd> TakeNetNamespace() { return netns_.Take(); }
  const sandbox::CgroupLayout& cgroup_layout() const { return layout_; }

 private:
  SandboxHost(sandbox::UidAllocator uids, sandbox::CgroupLayout layout)
      : uids_(std::move(uids)), layout_(std::move(layout)), netns_(2) {}

  const sandbox::UidAllocator uids_;
  const sandbox::CgroupLayout layout_;
  sandbox::NetNamespacePool netns_;
};

// The OOM-kill count in a cgroup's memory events file: v1
// memory.oom_control or v2 memory.events ("oom_kill N" lines). 0 when the
// line is absent.
uint64_t ParseOomKillCount(const std::string& contents);

}  // namespace vmms

#endif  // HVSTACK_VMMS_WORKER_SANDBOX_H_
