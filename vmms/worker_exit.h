#ifndef HVSTACK_VMMS_WORKER_EXIT_H_
#define HVSTACK_VMMS_WORKER_EXIT_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "proto/hvstack/internal/worker.pb.h"
#include "proto/hvstack/v1/vm.pb.h"

namespace vmms {

// What a worker's end means for its VM.
struct WorkerOutcome {
  hvstack::v1::VmState state;
  std::string reason;
  // For a worker that never became ready: the error StartVm returns.
  absl::Status start_error;
};

// Decides the VM's state and reason after its worker exited. `report` is the
// worker's own account (absent when it was killed or crashed); `wait_status` is
// from waitpid; `ready` says whether it had reported ready; `vmms_stop_reason`,
// when set, is why vmms itself stopped or killed it.
WorkerOutcome ClassifyWorkerExit(
    const std::optional<hvstack::internal::WorkerExitReport>& report,
    int wait_status, bool ready,
    const std::optional<std::string>& vmms_stop_reason);

// The same for a worker that is not our child (taken over after a vmms
// restart, so it was ready): no wait status, only its exit report.
WorkerOutcome ClassifyAdoptedWorkerExit(
    const std::optional<hvstack::internal::WorkerExitReport>& report,
    int64_t pid, const std::optional<std::string>& vmms_stop_reason);

}  // namespace vmms

#endif  // HVSTACK_VMMS_WORKER_EXIT_H_
