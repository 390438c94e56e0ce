#include "vmwp/sandbox/confine.h"

#include <sys/resource.h>

#include <functional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
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
  // Runs one step, names it in the error, and records its duration.
  auto run = [&options](const char* name,
                        const std::function<absl::Status()>& step) {
    const absl::Time start = absl::Now();
    absl::Status status = Step(name, step());
    if (options.step_ms != nullptr) {
      options.step_ms->emplace_back(
          name, absl::ToDoubleMilliseconds(absl::Now() - start));
    }
    return status;
  };
  SeccompPolicies policies;
  // Order matters: mounts need CAP_SYS_ADMIN, the bounding set CAP_SETPCAP,
  // the id switch CAP_SETUID/SETGID; each step needs what the next drops.
  const std::pair<const char*, std::function<absl::Status()>> steps[] = {
      {"validate", [&] { return ValidateSpec(spec); }},
      {"namespaces",
       [&] {
         return options.require_own_pid_namespace ? CheckSpawnedInNamespaces()
                                                  : absl::OkStatus();
       }},
      {"minimal root", [&] { return BuildMinimalRoot(spec); }},
      {"while still root",
       [&] {
         return options.while_still_root ? options.while_still_root()
                                         : absl::OkStatus();
       }},
      {"rlimits",
       [&] {
         // No RLIMIT_NPROC: it counts every process of the uid, and a uid
         // is only unique per vmms. Several vmms on one host (tests, or
         // developers' instances) hand out the same slots, and a worker
         // then failed pthread_create (abort) because of another vmms's
         // VMs. The pids cgroup (vmms's) is the per-VM fence.
         return SetResourceLimits(spec.max_open_files, RLIM_INFINITY);
       }},
      {"bounding set", [&] { return DropBoundingAndAmbient(); }},
      {"identity", [&] { return SwitchIdentity(spec.uid, spec.gid); }},
      {"capabilities", [&] { return DropAllCapabilities(); }},
      {"no_new_privs", [&] { return SetNoNewPrivs(); }},
      {"seccomp compile",
       [&] {
         absl::StatusOr<SeccompPolicies> compiled =
             CompilePolicies(options.action);
         if (!compiled.ok()) return compiled.status();
         policies = *std::move(compiled);
         return absl::OkStatus();
       }},
  };
  for (const auto& [name, step] : steps) {
    if (absl::Status s = run(name, step); !s.ok()) return s;
  }
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
