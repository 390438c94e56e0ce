#include "vmms/worker_exit.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "vmms/worker_spawn.h"

namespace vmms {

using hvstack::internal::WorkerExitReport;
using hvstack::v1::VM_STATE_CRASHED;
using hvstack::v1::VM_STATE_OFF;

WorkerOutcome ClassifyWorkerExit(
    const std::optional<WorkerExitReport>& report, int wait_status, bool ready,
    const std::optional<std::string>& vmms_stop_reason) {
  const std::string stop_reason =
      vmms_stop_reason.value_or("stopped by user (hard power-off)");
  if (report.has_value()) {
    switch (report->reason()) {
      case WorkerExitReport::GUEST_POWER_OFF:
        // After a shutdown through the guest's shutdown IC the worker says
        // why: "guest shut down: <reason>".
        if (absl::StartsWith(report->detail(), "guest shut down: "))
          return {VM_STATE_OFF, report->detail(), absl::OkStatus()};
        return {VM_STATE_OFF, "guest powered off", absl::OkStatus()};
      case WorkerExitReport::GUEST_CRASHED:
        return {VM_STATE_CRASHED,
                absl::StrCat("guest crashed: ", report->detail()),
                absl::OkStatus()};
      case WorkerExitReport::REBOOT_REQUESTED:
        // Not respawned (vmms was stopping it, or shutting down): the stop
        // is what the user asked for.
        if (vmms_stop_reason.has_value()) {
          return {VM_STATE_OFF, stop_reason,
                  ready ? absl::OkStatus() : absl::AbortedError(stop_reason)};
        }
        return {VM_STATE_OFF,
                absl::StrCat("guest rebooted: ", report->detail()),
                absl::OkStatus()};
      case WorkerExitReport::STOP_REQUESTED:
        return {VM_STATE_OFF, stop_reason,
                ready ? absl::OkStatus() : absl::AbortedError(stop_reason)};
      case WorkerExitReport::WORKER_ERROR: {
        if (ready) {
          // The VM ran, then the worker itself failed: the guest did not ask
          // for this.
          return {VM_STATE_CRASHED,
                  absl::StrCat("worker failed: ", report->detail()),
                  absl::OkStatus()};
        }
        std::string reason =
            absl::StrCat("worker failed to start: ", report->detail());
        auto code = static_cast<absl::StatusCode>(report->status_code());
        if (code == absl::StatusCode::kOk || report->status_code() < 0 ||
            report->status_code() >
                static_cast<int>(absl::StatusCode::kUnauthenticated)) {
          code = absl::StatusCode::kInternal;
        }
        return {VM_STATE_OFF, reason, absl::Status(code, reason)};
      }
      default:
        break;
    }
  }
  if (vmms_stop_reason.has_value()) {
    return {VM_STATE_OFF, stop_reason,
            ready ? absl::OkStatus() : absl::AbortedError(stop_reason)};
  }
  std::string how = DescribeWaitStatus(wait_status);
  if (!ready) {
    // StartVm's contract leaves a VM that never started Off, with the reason.
    std::string reason = absl::StrCat("worker failed to start: ", how);
    return {VM_STATE_OFF, reason,
            absl::InternalError(reason + " (see vmms's log)")};
  }
  return {VM_STATE_CRASHED, how, absl::OkStatus()};
}

WorkerOutcome ClassifyAdoptedWorkerExit(
    const std::optional<WorkerExitReport>& report, int64_t pid,
    const std::optional<std::string>& vmms_stop_reason) {
  if (report.has_value() || vmms_stop_reason.has_value()) {
    return ClassifyWorkerExit(report, /*wait_status=*/0, /*ready=*/true,
                              vmms_stop_reason);
  }
  return {VM_STATE_CRASHED,
          absl::StrCat("worker ", pid,
                       " ended without an exit report (killed?); it was "
                       "started by an earlier vmms, so its signal is unknown"),
          absl::OkStatus()};
}

}  // namespace vmms
