#ifndef HVSTACK_VMWP_SANDBOX_CONFINE_H_
#define HVSTACK_VMWP_SANDBOX_CONFINE_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "vmwp/sandbox/sandbox_spec.h"
#include "vmwp/sandbox/seccomp_policy.h"

namespace sandbox {

struct ConfineOptions {
  // Refuse to run unless pid 1 of a fresh pid namespace (SpawnSandboxed).
  bool require_own_pid_namespace = true;
  ViolationAction action = ViolationAction::kTrapAndReport;
  // Runs inside the new root while still root: open what the VM's uid may
  // not read itself (a 0600 kernel image, disks) by their inside paths.
  // The descriptors survive the identity switch.
  std::function<absl::Status()> while_still_root;
  // If set, gets (step name, milliseconds) for each step: the benchmark's
  // breakdown, and worth a debug log line in vmwp.
  std::vector<std::pair<std::string, double>>* step_ms = nullptr;
};

// Stage 1, in the worker as it starts (still root, in the namespaces
// SpawnSandboxed made): minimal root + pivot_root, rlimits, bounding set,
// uid/gid switch, no capabilities, no_new_privs; then compiles the seccomp
// programs (nothing is opened after this returns, except by inside paths).
// Each failure names its step. On error the process is half-confined and
// must exit.
absl::StatusOr<SeccompPolicies> ConfineProcess(
    const SandboxSpec& spec, const ConfineOptions& options = {});

// Stage 2, after the worker has opened its files (/vm/kernel,
// /run/vm/console.log, ...), created the partition, mapped guest memory and
// bound its socket, and before the first KVM_RUN: installs the SIGSYS
// reporter on `violation_fd` and the process-wide filter (TSYNC).
absl::Status LockDown(const SeccompPolicies& policies, int violation_fd);

}  // namespace sandbox

#endif  // HVSTACK_VMWP_SANDBOX_CONFINE_H_
