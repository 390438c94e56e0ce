#ifndef HVSTACK_VMWP_SANDBOX_VIOLATION_REPORT_H_
#define HVSTACK_VMWP_SANDBOX_VIOLATION_REPORT_H_

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace sandbox {

// Installs the SIGSYS handler for SECCOMP_RET_TRAP. On a violation it
// writes a hvstack::internal::ViolationRecord
// (proto/hvstack/internal/sandbox_violation.h) to `report_fd` (a pipe to vmms,
// inherited), then makes the same call again from inside the handler: the
// kernel forces that second SIGSYS to its default action, which kills the whole
// process (even as pid 1 of its namespace), so vmms still sees WTERMSIG ==
// SIGSYS. The forbidden call never runs. One exception, checked first: an open
// of a BenignProbePaths() entry returns ENOENT (not run either) and the worker
// carries on. `report_fd` must stay open for the life of the process.
absl::Status InstallViolationReporter(int report_fd);

// Files glibc and gRPC probe on their own while the worker runs (CPU
// counts, somaxconn). None exists in the minimal root; an open of exactly
// one of these paths is answered ENOENT instead of killing the worker.
absl::Span<const char* const> BenignProbePaths();

}  // namespace sandbox

#endif  // HVSTACK_VMWP_SANDBOX_VIOLATION_REPORT_H_
