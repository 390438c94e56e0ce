#include "vmms/sandbox/violation_exit.h"

#include <seccomp.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "proto/hvstack/internal/sandbox_violation.h"

namespace sandbox {

using hvstack::internal::ParseViolationRecord;
using hvstack::internal::ViolationRecord;

std::string SyscallName(uint32_t arch, int syscall_nr) {
  char* name = seccomp_syscall_resolve_num_arch(
      arch == 0 ? SCMP_ARCH_NATIVE : arch, syscall_nr);
  if (name == nullptr) return absl::StrCat("syscall ", syscall_nr);
  std::string result(name);
  std::free(name);
  return result;
}

std::optional<std::string> DescribeSandboxExit(int wait_status,
                                               absl::string_view report_bytes) {
  if (!WIFSIGNALED(wait_status) || WTERMSIG(wait_status) != SIGSYS) {
    return std::nullopt;
  }
  std::optional<ViolationRecord> record = ParseViolationRecord(
      std::string_view(report_bytes.data(), report_bytes.size()));
  if (!record) {
    return std::string("sandbox violation: unknown system call");
  }
  return absl::StrCat("sandbox violation: ",
                      SyscallName(record->arch, record->syscall_nr));
}

}  // namespace sandbox
