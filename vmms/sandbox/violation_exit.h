#ifndef HVSTACK_VMMS_SANDBOX_VIOLATION_EXIT_H_
#define HVSTACK_VMMS_SANDBOX_VIOLATION_EXIT_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace sandbox {

// x86-64 syscall number -> name via libseccomp ("openat"); "syscall <nr>"
// if unknown. `arch` is an AUDIT_ARCH value (0 = native).
std::string SyscallName(uint32_t arch, int syscall_nr);

// For vmms after reaping a worker: "sandbox violation: openat" when the
// worker died of SIGSYS (the name from the hvstack::internal::ViolationRecord
// it wrote to its violation pipe, or "unknown system call" without one);
// nullopt for any other end.
std::optional<std::string> DescribeSandboxExit(int wait_status,
                                               absl::string_view report_bytes);

}  // namespace sandbox

#endif  // HVSTACK_VMMS_SANDBOX_VIOLATION_EXIT_H_
