#ifndef HVSTACK_VMMS_SANDBOX_CGROUP_H_
#define HVSTACK_VMMS_SANDBOX_CGROUP_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/scoped_fd.h"
#include "vmms/sandbox/resource_limits.h"

namespace sandbox {

// Where the host's cgroup controllers live. v2 when `root` is a cgroup2
// mount offering memory, pids and cpu; otherwise v1 with one hierarchy per
// controller (these build machines: /sys/fs/cgroup/{memory,cpu,pids}).
struct CgroupLayout {
  int version = 0;
  std::string v2_root;      // version 2
  std::string memory_root;  // version 1
  std::string cpu_root;
  std::string pids_root;
};

absl::StatusOr<CgroupLayout> DetectCgroupLayout(
    const std::string& root = "/sys/fs/cgroup");

// One VM's cgroup(s): <controller root>/hvstack/<vm id>. vmms creates it
// before spawning the worker, the spawn puts the worker in, and vmms
// removes it after reaping the worker. Not removed on destruction: the
// worker's lifetime, not this object's, decides.
class VmCgroup {
 public:
  static constexpr char kParent[] = "hvstack";

  // Creates the directories (reusing leftovers of a crashed vmms) and
  // writes the limits.
  static absl::StatusOr<VmCgroup> Create(const CgroupLayout& layout,
                                         const std::string& vm_id,
                                         const ResourceLimits& limits);
  // The cgroup of `vm_id` without creating it (for cleanup after restart).
  static VmCgroup Existing(const CgroupLayout& layout,
                           const std::string& vm_id);

  // Opens every cgroup.procs for writing. SpawnSandboxed writes "0" to each
  // in the child before execve, so the worker never runs outside its limits.
  absl::StatusOr<std::vector<base::ScopedFd>> OpenProcsFiles() const;

  absl::Status AddProcess(pid_t pid) const;

  // rmdir of every directory; retries briefly while the dying worker's
  // threads leave. NOT_FOUND-tolerant, so it is safe to call twice.
  absl::Status Remove() const;

  // Directories, one per hierarchy (one in v2).
  const std::vector<std::string>& dirs() const { return dirs_; }
  const CgroupLayout& layout() const { return layout_; }
  // The file that holds `what` ("memory", "pids", "cpu") for tests/logs.
  std::string LimitFile(const std::string& what) const;

 private:
  VmCgroup(CgroupLayout layout, std::vector<std::string> dirs)
      : layout_(std::move(layout)), dirs_(std::move(dirs)) {}

  CgroupLayout layout_;
  std::vector<std::string> dirs_;
};

}  // namespace sandbox

#endif  // HVSTACK_VMMS_SANDBOX_CGROUP_H_
