#ifndef HVSTACK_VMWP_SANDBOX_VIOLATION_REPORT_H_
#define HVSTACK_VMWP_SANDBOX_VIOLATION_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace sandbox {

// What the worker's SIGSYS handler writes, in one write(2) (atomic on a
// pipe: 24 bytes < PIPE_BUF), before it dies of SIGSYS.
struct ViolationRecord {
  static constexpr uint32_t kMagic = 0x48565342;  // "HVSB"
  uint32_t magic;
  int32_t syscall_nr;
  uint32_t arch;  // AUDIT_ARCH_* from siginfo, as libseccomp expects
  uint32_t reserved;
  uint64_t instruction_pointer;
};
static_assert(sizeof(ViolationRecord) == 24);

// Installs the SIGSYS handler for SECCOMP_RET_TRAP. On a violation it
// writes a ViolationRecord to `report_fd` (a pipe to vmms, inherited), then
// makes the same call again from inside the handler: the kernel forces that
// second SIGSYS to its default action, which kills the whole process (even
// as pid 1 of its namespace), so vmms still sees WTERMSIG == SIGSYS. The
// forbidden call never runs. One exception, checked first: an open of a
// BenignProbePaths() entry returns ENOENT (not run either) and the worker
// carries on. `report_fd` must stay open for the life of the process.
absl::Status InstallViolationReporter(int report_fd);

// Files glibc and gRPC probe on their own while the worker runs (CPU
// counts, somaxconn). None exists in the minimal root; an open of exactly
// one of these paths is answered ENOENT instead of killing the worker.
absl::Span<const char* const> BenignProbePaths();

// x86-64 syscall number -> name via libseccomp ("openat"); "syscall <nr>"
// if unknown. `arch` is an AUDIT_ARCH value (0 = native).
std::string SyscallName(uint32_t arch, int syscall_nr);

// Parses what vmms read from the report pipe; nullopt if it holds no
// well-formed record.
std::optional<ViolationRecord> ParseViolationRecord(absl::string_view bytes);

// For vmms after reaping a worker: "sandbox violation: openat" when the
// worker died of SIGSYS (the name from the record, or "unknown system call"
// without one); nullopt for any other end.
std::optional<std::string> DescribeSandboxExit(int wait_status,
                                               absl::string_view report_bytes);

}  // namespace sandbox

#endif  // HVSTACK_VMWP_SANDBOX_VIOLATION_REPORT_H_
