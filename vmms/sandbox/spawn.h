#ifndef HVSTACK_VMMS_SANDBOX_SPAWN_H_
#define HVSTACK_VMMS_SANDBOX_SPAWN_H_

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "vmms/sandbox/cgroup.h"

namespace sandbox {

// How vmms starts a worker inside its namespaces (vmms's half of the
// sandbox; the worker confines the rest itself with ConfineProcess).
struct SpawnRequest {
  std::string binary;             // absolute path, exec'd as is
  std::vector<std::string> argv;  // argv[0] included
  std::vector<std::string> env;   // the complete environment
  // (descriptor in vmms, number in the worker): e.g. {kvm, 3}, {ready, 4},
  // {violation pipe, 5}. 0-2 are inherited unless remapped; every other
  // descriptor is closed on exec, whatever its CLOEXEC flag.
  std::vector<std::pair<int, int>> fds;
  int namespace_flags = 0;  // NamespaceFlags(...); may be 0
  std::string netns_path;   // a prepared namespace, joined when set
  // A net namespace to join (NetNamespacePool::Take); CLONE_NEWNET is then
  // dropped from namespace_flags. Takes precedence over netns_path.
  int netns_fd = -1;
  const VmCgroup* cgroup = nullptr;  // joined before execve when set
};

// The clone flags for a VM's worker: new mount, pid, ipc, uts and (unless it
// joins a prepared one) net namespaces. No user namespace: the worker drops
// root for a real, unprivileged uid instead, and KVM and cgroups need no
// mapping games.
int NamespaceFlags(bool joins_prepared_netns);

// clone(CLONE_VM | CLONE_VFORK | namespace flags) + execve, as posix_spawn
// does, so the worker is pid 1 of a new pid namespace and a direct child of
// vmms: waitpid sees its real status (SIGSYS for a violation). The child
// joins the cgroup before execve, so no worker instruction runs unlimited.
// Safe to call from a multithreaded vmms: the child only makes raw calls on
// memory prepared here. Returns the worker's pid in vmms's namespace.
absl::StatusOr<pid_t> SpawnSandboxed(const SpawnRequest& request);

}  // namespace sandbox

#endif  // HVSTACK_VMMS_SANDBOX_SPAWN_H_
