#ifndef HVSTACK_VMWP_SANDBOX_SECCOMP_POLICY_H_
#define HVSTACK_VMWP_SANDBOX_SECCOMP_POLICY_H_

#include <linux/filter.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace sandbox {

// The kinds of threads a worker runs; each gets its own allowlist.
enum class ThreadKind : uint32_t {
  kVcpu = 1,     // KVM_RUN loop; port/MMIO dispatch to devices inline
  kDevice = 2,   // device back-ends, VMBus rings, console, I/O
  kService = 4,  // main thread, gRPC server threads, signal watcher
};
inline constexpr uint32_t kAllKinds = 7;

// What happens to a call outside the allowlist.
enum class ViolationAction {
  // SIGSYS to a handler that reports the call (violation_report.h), then
  // the process dies of SIGSYS. The default.
  kTrapAndReport,
  // The kernel kills the process at once; vmms sees SIGSYS, not the call.
  kKillProcess,
  // Allow and log to the kernel's audit log: to find missing entries while
  // developing, never in production.
  kLogOnly,
};

// How an allowed call's arguments are further restricted.
enum class ArgCheck {
  kNone,
  kIoctlTable,     // arg1 must be a request in the ioctl table for this kind
  kFcntlSafe,      // F_GETFD/F_SETFD/F_GETFL/F_SETFL only (no F_DUPFD games)
  kNoExec,         // PROT_EXEC refused in mmap/mprotect (arg2)
  kThreadOnly,     // clone with CLONE_THREAD: threads, never processes
  kSelfOnly,       // tgkill aimed at our own thread group only
  kEnosys,         // fails with ENOSYS (clone3: glibc falls back to clone)
  kAddFilterOnly,  // seccomp(SECCOMP_SET_MODE_FILTER, 0): only narrows
  kSetNameOnly,    // prctl(PR_SET_NAME): gRPC names its threads
};

struct SyscallRule {
  const char* name;
  uint32_t kinds;  // bit set of ThreadKind
  ArgCheck check;
  const char* why;
};

struct IoctlRule {
  unsigned long request;
  const char* name;
  uint32_t kinds;
};

// The audited tables (seccomp_policy.cc). Everything else is a violation.
absl::Span<const SyscallRule> SyscallTable();
absl::Span<const IoctlRule> IoctlTable();

// A compiled BPF program, ready to install without libseccomp (and without
// allocating or opening anything), so threads can narrow themselves after
// the process filter is in.
struct CompiledFilter {
  uint32_t kinds = 0;
  std::vector<sock_filter> program;
};

// Compiles the allowlist for the union of `kinds`. Must run before the
// process filter is installed (libseccomp needs memfd_create to export).
absl::StatusOr<CompiledFilter> CompileFilter(uint32_t kinds,
                                             ViolationAction action);

// All three kinds plus their union, compiled once before lock-down.
struct SeccompPolicies {
  CompiledFilter process;  // union of every kind: installed with TSYNC
  CompiledFilter vcpu;
  CompiledFilter device;
  CompiledFilter service;
  const CompiledFilter& For(ThreadKind kind) const;
};
absl::StatusOr<SeccompPolicies> CompilePolicies(ViolationAction action);

// Installs the union filter on every thread of the process (TSYNC): no
// thread started earlier (spdlog, gRPC, the signal watcher) escapes it.
// Requires no_new_privs. Logs the filter size.
absl::Status InstallProcessFilter(const SeccompPolicies& policies);

// Stacks `kind`'s narrower filter on the calling thread only; threads it
// creates later inherit it. Safe after InstallProcessFilter (no allocation).
absl::Status InstallThreadFilter(const SeccompPolicies& policies,
                                 ThreadKind kind);

}  // namespace sandbox

#endif  // HVSTACK_VMWP_SANDBOX_SECCOMP_POLICY_H_
