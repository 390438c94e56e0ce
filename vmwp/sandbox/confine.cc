#include "vmwp/sandbox/confine.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "vmwp/sandbox/minimal_root.h"
#include "vmwp/sandbox/namespaces.h"
#include "vmwp/sandbox/privileges.h"
#include "vmwp/sandbox/violation_report.h"

namespace sandbox {
namespace {

absl::Status Step(const char* name, absl::Status status) {
  if (status.ok()) return status;
  return absl::Status(
      status.code(),
      absl::StrCat("sandbox step \"", name, "\" failed: ", status.message()));
}

}  // namespace

absl::StatusOr<SeccompPolicies> ConfineProcess(const SandboxSpec& spec,
                                               const ConfineOptions& options) {
  if (absl::Status s = Step("validate", ValidateSpec(spec)); !s.ok()) return s;
  if (options.require_own_pid_namespace) {
    if (absl::Status s = Step("namespaces", CheckSpawnedInNamespaces());
        !s.ok()) {
      return s;
    }
  }
  // Order matters: mounts need CAP_SYS_ADMIN, the bounding set CAP_SETPCAP,
  // the id switch CAP_SETUID/SETGID; each step needs what the next drops.
  if (absl::Status s = Step("minimal root", BuildMinimalRoot(spec)); !s.ok()) {
    return s;
  }
  if (options.while_still_root) {
    if (absl::Status s = Step("while still root", options.while_still_root());
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = Step("rlimits", SetResourceLimits(spec.max_open_files,
                                                         spec.limits.pids_max));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Step("bounding set", DropBoundingAndAmbient());
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Step("identity", SwitchIdentity(spec.uid, spec.gid));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Step("capabilities", DropAllCapabilities()); !s.ok()) {
    return s;
  }
  if (absl::Status s = Step("no_new_privs", SetNoNewPrivs()); !s.ok()) {
    return s;
  }
  absl::StatusOr<SeccompPolicies> policies = CompilePolicies(options.action);
  if (!policies.ok()) return Step("seccomp compile", policies.status());
  spdlog::info(
      "sandbox: confined as uid {} gid {} in a minimal root ({} VM "
      "files)",
      spec.uid, spec.gid, spec.files.size());
  return policies;
}

absl::Status LockDown(const SeccompPolicies& policies, int violation_fd) {
  if (absl::Status s =
          Step("violation reporter", InstallViolationReporter(violation_fd));
      !s.ok()) {
    return s;
  }
  return Step("seccomp", InstallProcessFilter(policies));
}

}  // namespace sandbox
