#ifndef HVSTACK_TESTS_SANDBOX_PROBE_LAUNCHER_H_
#define HVSTACK_TESTS_SANDBOX_PROBE_LAUNCHER_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/scoped_fd.h"
#include "vmms/sandbox/cgroup.h"
#include "vmms/sandbox/netns_pool.h"
#include "vmms/sandbox/resource_limits.h"
#include "vmms/sandbox/zygote.h"
#include "vmwp/sandbox/sandbox_spec.h"

namespace sandbox::testing {

struct ProbeOptions {
  bool sandbox = true;  // false: plain spawn, --no-sandbox
  bool exit_after_confine = false;
  std::string forbidden;  // --test-forbidden-syscall
  std::string forbidden_thread = "service";
  // Namespace flags (CLONE_NEW*) left out, for the benchmark's breakdown.
  int skip_namespaces = 0;
  // Join a pooled empty net namespace instead of creating one at spawn.
  NetNamespacePool* netns_pool = nullptr;
  // Fork the probe from this fork server (a sandbox_probe --zygote-fd, see
  // ZygoteProbePath) instead of exec'ing it; the cgroup is then joined from
  // outside right after the spawn.
  Zygote* zygote = nullptr;
  // More descriptors for the probe: (descriptor here, number in the probe).
  std::vector<std::pair<int, int>> extra_fds;
};

// Does what vmms will do for a worker, for sandbox_probe: a temp "kernel"
// and runtime dir, a uid from UidAllocator, a cgroup, pipes, SpawnSandboxed.
// Cleans everything up (kills the probe if still running) on destruction.
class ProbeRun {
 public:
  static absl::StatusOr<std::unique_ptr<ProbeRun>> Start(
      const ProbeOptions& options);
  ~ProbeRun();

  pid_t pid() const { return pid_; }
  const SandboxSpec& spec() const { return spec_; }
  const ResourceLimits& limits() const { return limits_; }
  const VmCgroup* cgroup() const { return cgroup_ ? &*cgroup_ : nullptr; }
  const std::string& runtime_dir() const { return spec_.runtime_dir; }

  // Lines the probe reported, up to "locked" (or an "error: ..." line).
  absl::StatusOr<std::vector<std::string>> ReadUntilLocked();
  absl::Status Send(char command);
  // vmms-side costs of Start: temp files, uid, cgroup; then the spawn
  // itself (clone + namespaces + cgroup join + execve).
  double prepare_ms() const { return prepare_ms_; }
  double spawn_ms() const { return spawn_ms_; }

  // Reaps the probe; its wait status.
  int Wait();
  // Whatever arrived on the violation pipe (after Wait).
  std::string ViolationBytes();

 private:
  ProbeRun() = default;

  std::string temp_dir_;
  SandboxSpec spec_;
  ResourceLimits limits_;
  std::optional<VmCgroup> cgroup_;
  base::ScopedFd report_read_, control_write_, violation_read_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  double prepare_ms_ = 0;
  double spawn_ms_ = 0;
};

// The probe binary: $HVSTACK_SANDBOX_PROBE, else the runfiles path.
std::string ProbePath();

}  // namespace sandbox::testing

#endif  // HVSTACK_TESTS_SANDBOX_PROBE_LAUNCHER_H_
