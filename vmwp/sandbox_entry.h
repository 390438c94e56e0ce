#ifndef HVSTACK_VMWP_SANDBOX_ENTRY_H_
#define HVSTACK_VMWP_SANDBOX_ENTRY_H_

#include "absl/status/statusor.h"
#include "proto/hvstack/internal/worker.pb.h"
#include "vmwp/sandbox/sandbox_spec.h"

namespace vmwp {

// Whether vmms asked this worker to confine itself (WorkerConfig.sandbox set
// and not disabled). An unconfined worker is vmms --no-sandbox, or a test
// that runs vmwp by hand.
bool SandboxRequested(const hvstack::internal::WorkerConfig& config);

// The worker's SandboxSpec, from its config (host paths): the VM's uid/gid,
// the kernel and initrd at /vm/kernel and /vm/initrd, the runtime dir at
// /run/vm, the RLIMIT_NOFILE ConfineProcess sets (the memory, CPU and pids
// limits are the cgroup's, which vmms owns).
sandbox::SandboxSpec SpecForWorker(
    const hvstack::internal::WorkerConfig& config);

// `config` with every path replaced by its name inside the sandbox (kernel,
// initrd, runtime dir, socket, console log, exit report). INVALID_ARGUMENT
// naming the path if one would not be visible inside.
absl::StatusOr<hvstack::internal::WorkerConfig> InsideConfig(
    const hvstack::internal::WorkerConfig& config,
    const sandbox::SandboxSpec& spec);

}  // namespace vmwp

#endif  // HVSTACK_VMWP_SANDBOX_ENTRY_H_
