#ifndef HVSTACK_VMWP_EXIT_REPORT_H_
#define HVSTACK_VMWP_EXIT_REPORT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/scoped_fd.h"
#include "proto/hvstack/internal/worker.pb.h"
#include "vid/partition.h"

namespace vmwp {

inline constexpr char kExitReportFile[] = "exit_report.pb";

// The report for a worker that could not compose or run its VM: WORKER_ERROR
// with the status's code and message.
hvstack::internal::WorkerExitReport ErrorReport(const absl::Status& status);

// The report for a VM that ran: power-off, crash (with vid's detail, which
// names the instruction bytes where KVM gave them) or stop.
hvstack::internal::WorkerExitReport OutcomeReport(
    const vid::RunOutcome& outcome);

// Writes <dir>/exit_report.pb atomically (temporary file, fsync, rename) so
// that vmms never reads a partial report.
absl::Status WriteExitReport(const std::string& dir,
                             const hvstack::internal::WorkerExitReport& report);
// The same at `path` (WorkerConfig.exit_report_path); `path`.tmp is the
// temporary file.
absl::Status WriteExitReportFile(
    const std::string& path, const hvstack::internal::WorkerExitReport& report);

// The exit report of a worker whose seccomp filter forbids open(2) by the time
// it exits: `<path>.tmp` is opened (created) up front; Write truncates it,
// writes, fsyncs and renames it to the final name. The same files may be
// known by several names (a host path before confinement, the path inside
// the sandbox after it); Write renames by the first name that works, so a
// worker that failed half-way through confinement still reports.
class PreopenedExitReport {
 public:
  static absl::StatusOr<PreopenedExitReport> Open(const std::string& path);
  // Another name for the report (tried before the earlier ones).
  void AddName(const std::string& path);
  absl::Status Write(const hvstack::internal::WorkerExitReport& report);

 private:
  explicit PreopenedExitReport(base::ScopedFd fd, std::string path);
  base::ScopedFd fd_;
  std::vector<std::string> names_;  // most preferred first
};

// The process exit code for a report: 0 when the VM ended cleanly (power-off,
// crash, stop: the worker did its job), 1 for WORKER_ERROR.
int ExitCodeFor(const hvstack::internal::WorkerExitReport& report);

}  // namespace vmwp

#endif  // HVSTACK_VMWP_EXIT_REPORT_H_
