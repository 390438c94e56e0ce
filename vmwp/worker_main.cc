#include "vmwp/worker_main.h"

#include <errno.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/internal/sysinfo.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "vmwp/exit_report.h"
#include "vmwp/host_info.h"
#include "vmwp/sandbox/confine.h"
#include "vmwp/sandbox/seccomp_policy.h"
#include "vmwp/sandbox_entry.h"
#include "vmwp/signal_watcher.h"
#include "vmwp/thread_stacks.h"
#include "vmwp/worker.h"
#include "vmwp/worker_logging.h"
#include "vmwp/zygote.h"

ABSL_FLAG(std::string, config, "",
          "Path of the serialized hvstack.internal.WorkerConfig.");
ABSL_FLAG(bool, host_info, false,
          "Print the host's KVM (a serialized hvstack.internal.HostKvmInfo) "
          "to stdout and exit (also spelled --host-info). vmms uses it for "
          "GetHostInfo.");
ABSL_FLAG(std::string, kvm_device, "/dev/kvm",
          "The KVM device for --host-info (also spelled --kvm-device).");
ABSL_FLAG(int, ready_fd, -1,
          "Descriptor to write one byte to once the VM is composed (also "
          "spelled --ready-fd).");

namespace {

// vmms passes --ready-fd (the protocol's spelling); absl flag names cannot
// contain '-'.
std::vector<char*> NormalizeFlagNames(int argc, char** argv,
                                      std::vector<std::string>& storage) {
  storage.assign(argv, argv + argc);
  for (std::string& arg : storage) {
    if (arg.rfind("--", 0) != 0 || arg == "--") continue;
    const size_t end = std::min(arg.find('='), arg.size());
    for (size_t i = 2; i < end; ++i) {
      if (arg[i] == '-') arg[i] = '_';
    }
  }
  std::vector<char*> out;
  for (std::string& arg : storage) out.push_back(arg.data());
  return out;
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

absl::Status Annotate(const absl::Status& s, absl::string_view what) {
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
}

// Confines the worker (vmwp/sandbox/README.md, "Order of confinement"):
// stage 1 now; `hooks` get stage 2 (LockDown before the ready byte) and the
// vCPU threads' narrowing. On success `config` holds the inside paths.
absl::Status EnterSandbox(hvstack::internal::WorkerConfig& config,
                          vmwp::PreopenedExitReport* report,
                          std::shared_ptr<sandbox::SeccompPolicies>& policies,
                          vmwp::WorkerHooks& hooks) {
  // As pid 1 of its namespace the worker ignores SIGABRT: abort() ends in
  // its final `hlt` and the worker dies of SIGSEGV. Say why first.
  std::set_terminate([] {
    std::string what = "no exception";
    if (std::exception_ptr e = std::current_exception()) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        what = ex.what();
      } catch (...) {
        what = "unknown exception";
      }
    }
    spdlog::critical("vmwp: std::terminate ({}); aborting", what);
    spdlog::default_logger()->flush();
    std::abort();
  });
  // Its own session, as the unsandboxed spawn gives (a ^C in vmms's terminal
  // is not the worker's); SpawnSandboxed cannot do it for us.
  ::setsid();
  // Files libraries read lazily, on first use, that the root will not have:
  // the local time zone (gRPC formats status times with absl::FormatTime,
  // which loads /etc/localtime the first time). Loaded now, it is cached.
  (void)absl::FormatTime(absl::Now());
  // absl's cycle clock reads /sys/devices/system/cpu/cpu0/tsc_freq_khz once
  // (absl::Mutex timeouts, gRPC timers).
  (void)absl::base_internal::NominalCPUFrequency();
  const sandbox::SandboxSpec spec = vmwp::SpecForWorker(config);
  absl::StatusOr<hvstack::internal::WorkerConfig> inside =
      vmwp::InsideConfig(config, spec);
  if (!inside.ok()) return inside.status();
  std::vector<std::pair<std::string, double>> steps;
  absl::StatusOr<sandbox::SeccompPolicies> compiled =
      sandbox::ConfineProcess(spec, {.step_ms = &steps});
  if (report != nullptr) report->AddName(inside->exit_report_path());
  if (!compiled.ok()) return Annotate(compiled.status(), "sandbox");
  std::string breakdown;
  for (const auto& [step, ms] : steps)
    absl::StrAppend(&breakdown, breakdown.empty() ? "" : ", ", step, " ",
                    absl::StrFormat("%.2f", ms), " ms");
  spdlog::info("confined: uid {}, gid {}, root {} ({})", spec.uid, spec.gid,
               "minimal", breakdown);
  policies = std::make_shared<sandbox::SeccompPolicies>(*std::move(compiled));
  const int violation_fd = config.sandbox().violation_fd();
  const int joined_fd = config.sandbox().cgroup_joined_fd();
  hooks.before_ready = [policies, violation_fd, joined_fd] {
    if (joined_fd >= 0) {
      // vmms joins us to the VM's cgroup while we start; no guest code runs
      // before that is done.
      char byte = 0;
      ssize_t n;
      do {
        n = ::read(joined_fd, &byte, 1);
      } while (n < 0 && errno == EINTR);
      ::close(joined_fd);
      if (n != 1) {
        return absl::FailedPreconditionError(
            "vmms did not confirm that the worker is in its cgroup");
      }
    }
    return sandbox::LockDown(*policies, violation_fd);
  };
  hooks.on_vp_thread_start = [policies](uint32_t) {
    return sandbox::InstallThreadFilter(*policies, sandbox::ThreadKind::kVcpu);
  };
  hooks.on_device_thread_start = [policies] {
    return sandbox::InstallThreadFilter(*policies,
                                        sandbox::ThreadKind::kDevice);
  };
  config = *std::move(inside);
  return absl::OkStatus();
}

}  // namespace

namespace vmwp {

int WorkerMain(int argc, char** argv, AfterReady after_ready) {
  // Before the first thread (and before the fork server forks anything).
  if (absl::Status s = vmwp::LimitDefaultThreadStacks(); !s.ok()) {
    spdlog::warn("thread stacks keep glibc's default size: {}", s.ToString());
  }
  // The fork server (zygote.h): it returns here, in each new worker, with the
  // worker's own command line; from here on the worker is the same as an
  // exec'd one.
  std::vector<std::string> forked_argv;
  std::vector<char*> forked_ptrs;
  if (std::optional<int> zygote_fd = vmwp::ZygoteFdFlag(argc, argv)) {
    std::optional<std::vector<std::string>> worker =
        vmwp::ServeZygote(*zygote_fd, argc, argv);
    if (!worker.has_value()) return 0;
    forked_argv = *std::move(worker);
    for (std::string& arg : forked_argv) forked_ptrs.push_back(arg.data());
    forked_ptrs.push_back(nullptr);
    argc = static_cast<int>(forked_argv.size());
    argv = forked_ptrs.data();
  }
  // Before any thread exists: every thread inherits the mask.
  vmwp::SignalWatcher::BlockTerminationSignals();
  ::signal(SIGPIPE, SIG_IGN);

  absl::SetProgramUsageMessage(
      "vmwp --config=<worker_config.pb> [--ready-fd=N]");
  std::vector<std::string> storage;
  std::vector<char*> args = NormalizeFlagNames(argc, argv, storage);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  if (absl::GetFlag(FLAGS_host_info)) {
    // Not a worker: no VM, no sandbox; vmms runs this once for GetHostInfo.
    absl::StatusOr<hvstack::internal::HostKvmInfo> info =
        vmwp::ProbeHostKvm(absl::GetFlag(FLAGS_kvm_device));
    if (!info.ok()) {
      spdlog::error("{}", info.status().ToString());
      return 1;
    }
    return info->SerializeToOstream(&std::cout) && std::cout.flush() ? 0 : 1;
  }
  const std::string config_path = absl::GetFlag(FLAGS_config);
  const int ready_fd = absl::GetFlag(FLAGS_ready_fd);
  if (config_path.empty()) {
    spdlog::error("--config is required");
    return 2;
  }

  hvstack::internal::WorkerExitReport report;
  // Opened before confinement: the sandboxed worker cannot open files at
  // exit.
  std::optional<vmwp::PreopenedExitReport> preopened;
  // The config names where the report goes; if the config itself is unusable,
  // the report goes next to it (the runtime directory).
  std::string report_path =
      absl::StrCat(DirName(config_path), "/", vmwp::kExitReportFile);
  absl::StatusOr<hvstack::internal::WorkerConfig> config =
      vmwp::ReadWorkerConfig(config_path);
  if (!config.ok()) {
    spdlog::error("{}", config.status().ToString());
    if (ready_fd >= 0) ::close(ready_fd);
    report = vmwp::ErrorReport(config.status());
  } else {
    report_path = config->exit_report_path();
    if (absl::Status s =
            vmwp::SetUpWorkerLogging(config->runtime_dir(), config->vm_name());
        !s.ok()) {
      spdlog::warn("{} (logging to stderr only)", s.ToString());
    }
    spdlog::info("vmwp starting: vm {} ({}), config {}", config->vm_name(),
                 config->vm_uuid(), config_path);
    if (absl::StatusOr<vmwp::PreopenedExitReport> r =
            vmwp::PreopenedExitReport::Open(report_path);
        r.ok()) {
      preopened = *std::move(r);
    } else {
      spdlog::warn("{}", r.status().ToString());
    }
    vmwp::WorkerHooks hooks;
    if (after_ready) {
      hooks.after_ready = [after_ready, c = *config] { after_ready(c); };
    }
    std::shared_ptr<sandbox::SeccompPolicies> policies;
    absl::Status confined = absl::OkStatus();
    if (vmwp::SandboxRequested(*config)) {
      confined = EnterSandbox(*config, preopened ? &*preopened : nullptr,
                              policies, hooks);
    } else {
      spdlog::warn(
          "vmwp runs WITHOUT its sandbox (no SandboxConfig, or disabled)");
    }
    if (!confined.ok()) {
      spdlog::error("cannot start VM {}: {}", config->vm_name(),
                    confined.ToString());
      if (ready_fd >= 0) ::close(ready_fd);
      report = vmwp::ErrorReport(confined);
    } else {
      // Started only now: a thread made before confinement would keep the
      // full capability bounding set (it is per thread). Termination signals
      // are blocked from the start, so none is lost meanwhile.
      vmwp::SignalWatcher signals;
      report = vmwp::RunWorker(*config, ready_fd, &signals, hooks);
    }
  }

  int code = vmwp::ExitCodeFor(report);
  if (absl::Status s = preopened.has_value()
                           ? preopened->Write(report)
                           : vmwp::WriteExitReportFile(report_path, report);
      !s.ok()) {
    // vmms falls back to the wait status; make it say something went wrong.
    spdlog::error("cannot write the exit report: {}", s.ToString());
    code = 3;
  }
  spdlog::info(
      "vmwp exiting with {} ({})",
      hvstack::internal::WorkerExitReport::Reason_Name(report.reason()), code);
  return code;
}

}  // namespace vmwp
