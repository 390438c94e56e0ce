// vmwp: the per-VM worker process. See README.md.
//
//   vmwp --config=<runtime dir>/worker_config.pb [--ready-fd=N]
#include <signal.h>
#include <spdlog/spdlog.h>

#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "vmwp/exit_report.h"
#include "vmwp/signal_watcher.h"
#include "vmwp/worker.h"
#include "vmwp/worker_logging.h"

ABSL_FLAG(std::string, config, "",
          "Path of the serialized hvstack.internal.WorkerConfig.");
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

}  // namespace

int main(int argc, char** argv) {
  // Before any thread exists: every thread inherits the mask.
  vmwp::SignalWatcher::BlockTerminationSignals();
  ::signal(SIGPIPE, SIG_IGN);

  absl::SetProgramUsageMessage(
      "vmwp --config=<worker_config.pb> [--ready-fd=N]");
  std::vector<std::string> storage;
  std::vector<char*> args = NormalizeFlagNames(argc, argv, storage);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  const std::string config_path = absl::GetFlag(FLAGS_config);
  const int ready_fd = absl::GetFlag(FLAGS_ready_fd);
  if (config_path.empty()) {
    spdlog::error("--config is required");
    return 2;
  }

  vmwp::SignalWatcher signals;
  hvstack::internal::WorkerExitReport report;
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
    report = vmwp::RunWorker(*config, ready_fd, &signals);
  }

  int code = vmwp::ExitCodeFor(report);
  if (absl::Status s = vmwp::WriteExitReportFile(report_path, report);
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
