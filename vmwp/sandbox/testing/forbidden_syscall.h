#ifndef HVSTACK_VMWP_SANDBOX_TESTING_FORBIDDEN_SYSCALL_H_
#define HVSTACK_VMWP_SANDBOX_TESTING_FORBIDDEN_SYSCALL_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace sandbox::testing {

// Test builds only (the target is testonly): makes one call the sandbox
// forbids, so integration tests can show "sandbox violation: <syscall>".
// `which`: "openat" (a host file), "execve" (/bin/sh), "socket" (AF_UNIX),
// "accept4" (allowed to service threads only), "ioctl" (KVM_CREATE_VM, a
// setup-only request). Returns only if the call was not stopped.
absl::Status TriggerForbiddenSyscall(absl::string_view which);

}  // namespace sandbox::testing

#endif  // HVSTACK_VMWP_SANDBOX_TESTING_FORBIDDEN_SYSCALL_H_
