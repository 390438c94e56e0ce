#ifndef HVSTACK_VMMS_WORKER_SPAWN_H_
#define HVSTACK_VMMS_WORKER_SPAWN_H_

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"
#include "base/scoped_fd.h"

namespace vmms {

// The descriptor numbers a worker finds its inherited descriptors at. Fixed
// numbers keep the WorkerConfig independent of whatever numbers vmms happened
// to have open.
inline constexpr int kWorkerKvmFd = 3;
inline constexpr int kWorkerReadyFd = 4;

struct SpawnedWorker {
  pid_t pid = 0;
  // Read end of the ready pipe: one byte means ready, EOF without a byte means
  // the worker gave up (or died) before it was ready.
  base::ScopedFd ready;
};

// Starts `vmwp --config=<config_path> --ready-fd=4` with `kvm_fd` at descriptor
// 3 and the ready pipe's write end at 4. Every other descriptor above 2 is
// closed in the child, so a worker never holds another VM's /dev/kvm or vmms's
// database. The child gets its own session (a ^C in vmms's terminal is for
// vmms; a worker survives vmms's death) and a clean signal mask.
absl::StatusOr<SpawnedWorker> SpawnWorker(const std::string& vmwp_path,
                                          const std::string& config_path,
                                          int kvm_fd);

// "worker killed by signal 9 (SIGKILL)" or "worker exited with status 1".
std::string DescribeWaitStatus(int wait_status);

}  // namespace vmms

#endif  // HVSTACK_VMMS_WORKER_SPAWN_H_
