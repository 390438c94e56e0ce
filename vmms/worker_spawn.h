#ifndef HVSTACK_VMMS_WORKER_SPAWN_H_
#define HVSTACK_VMMS_WORKER_SPAWN_H_

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "base/scoped_fd.h"
#include "vmms/sandbox/cgroup.h"
#include "vmms/sandbox/zygote.h"

namespace vmms {

// The descriptor numbers a worker finds its inherited descriptors at. Fixed
// numbers keep the WorkerConfig independent of whatever numbers vmms happened
// to have open.
inline constexpr int kWorkerKvmFd = 3;
inline constexpr int kWorkerReadyFd = 4;
// The write end of the sandbox violation pipe: the worker's SIGSYS reporter
// writes which call was forbidden (proto/hvstack/internal/sandbox_violation.h).
inline constexpr int kWorkerViolationFd = 5;
// The read end of the cgroup-joined pipe (SandboxConfig.cgroup_joined_fd).
inline constexpr int kWorkerCgroupJoinedFd = 6;
// Issue 14: a restore's state file and memory file (WorkerConfig.restore).
inline constexpr int kWorkerSavedStateFd = 30;
inline constexpr int kWorkerSavedMemoryFd = 31;

// Descriptors a worker inherits besides the fixed ones: (descriptor in vmms,
// number in the worker), e.g. disks at kWorkerFirstDiskFd + i.
using InheritedFds = std::vector<std::pair<int, int>>;

struct SpawnedWorker {
  pid_t pid = 0;
  // Read end of the ready pipe: one byte means ready, EOF without a byte means
  // the worker gave up (or died) before it was ready.
  base::ScopedFd ready;
  // Read end of the violation pipe (non-blocking), sandboxed workers only.
  base::ScopedFd violations;
  // Write end of the cgroup-joined pipe: one byte once the worker is in its
  // cgroup (sandboxed workers only).
  base::ScopedFd cgroup_joined;
  // Made by the fork server (no exec).
  bool forked = false;
};

// Starts `vmwp --config=<config_path> --ready-fd=4` with `kvm_fd` at descriptor
// 3 and the ready pipe's write end at 4. Every other descriptor above 2 is
// closed in the child, so a worker never holds another VM's /dev/kvm or vmms's
// database. The child gets its own session (a ^C in vmms's terminal is for
// vmms; a worker survives vmms's death) and a clean signal mask.
// `extra` descriptors are dup2'ed onto their numbers (above 6).
absl::StatusOr<SpawnedWorker> SpawnWorker(const std::string& vmwp_path,
                                          const std::string& config_path,
                                          int kvm_fd,
                                          const InheritedFds& extra = {});

// The same inside the worker's sandbox (vmms/sandbox/spawn.h): new mount,
// pid, ipc, uts namespaces, the net namespace `netns_fd` (from the pool), the
// violation pipe's write end at 5 and the cgroup-joined pipe's read end at 6.
// The worker is pid 1 of its pid namespace and still our child. The caller
// puts it into its cgroup (JoinCgroup) and then writes `cgroup_joined`.
// With `zygote`, the worker is forked by the fork server (no exec; the same
// namespaces and descriptors, `extra` included); without one (gone, off, or
// it refused), it is exec'd.
absl::StatusOr<SpawnedWorker> SpawnSandboxedWorker(
    const std::string& vmwp_path, const std::string& config_path, int kvm_fd,
    int netns_fd, const InheritedFds& extra = {},
    sandbox::ZygoteKeeper* zygote = nullptr);

// Whatever the violation pipe holds (at most a few records), without
// blocking.
std::string DrainViolationPipe(int fd);

// "worker killed by signal 9 (SIGKILL)" or "worker exited with status 1".
std::string DescribeWaitStatus(int wait_status);

}  // namespace vmms

#endif  // HVSTACK_VMMS_WORKER_SPAWN_H_
