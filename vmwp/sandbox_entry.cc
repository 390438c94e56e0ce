#include "vmwp/sandbox_entry.h"

#include "absl/strings/str_cat.h"

namespace vmwp {

using hvstack::internal::WorkerConfig;

bool SandboxRequested(const WorkerConfig& config) {
  return config.has_sandbox() && !config.sandbox().disabled();
}

sandbox::SandboxSpec SpecForWorker(const WorkerConfig& config) {
  sandbox::SandboxSpec spec;
  spec.vm_id = config.vm_uuid();
  spec.uid = config.sandbox().uid();
  spec.gid = config.sandbox().gid();
  sandbox::AddBootFiles(spec, config.kernel_path(), config.initrd_path());
  spec.runtime_dir = config.runtime_dir();
  if (config.sandbox().max_open_files() > 0)
    spec.max_open_files = config.sandbox().max_open_files();
  if (!config.sandbox().netns_path().empty()) {
    spec.has_network = true;
    spec.netns_path = config.sandbox().netns_path();
  }
  return spec;
}

absl::StatusOr<WorkerConfig> InsideConfig(const WorkerConfig& config,
                                          const sandbox::SandboxSpec& spec) {
  WorkerConfig inside = config;
  struct Field {
    const char* name;
    const std::string& (WorkerConfig::*get)() const;
    void (WorkerConfig::*set)(const std::string&);
  };
  const Field fields[] = {
      {"kernel_path", &WorkerConfig::kernel_path,
       &WorkerConfig::set_kernel_path},
      {"initrd_path", &WorkerConfig::initrd_path,
       &WorkerConfig::set_initrd_path},
      {"runtime_dir", &WorkerConfig::runtime_dir,
       &WorkerConfig::set_runtime_dir},
      {"socket_path", &WorkerConfig::socket_path,
       &WorkerConfig::set_socket_path},
      {"handoff_socket_path", &WorkerConfig::handoff_socket_path,
       &WorkerConfig::set_handoff_socket_path},
      {"console_log_path", &WorkerConfig::console_log_path,
       &WorkerConfig::set_console_log_path},
      {"exit_report_path", &WorkerConfig::exit_report_path,
       &WorkerConfig::set_exit_report_path},
  };
  for (const Field& field : fields) {
    const std::string& host = (config.*field.get)();
    if (host.empty()) continue;
    std::optional<std::string> mapped = sandbox::MapIntoSandbox(spec, host);
    if (!mapped.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("worker config: ", field.name, " \"", host,
                       "\" is outside the VM's sandbox (neither a VM file nor "
                       "under the runtime dir ",
                       spec.runtime_dir, ")"));
    }
    (inside.*field.set)(*mapped);
  }
  return inside;
}

}  // namespace vmwp
