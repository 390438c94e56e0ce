#include "vmwp/worker_logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/log_pattern.h"

namespace vmwp {

absl::Status SetUpWorkerLogging(const std::string& runtime_dir,
                                const std::string& vm_name) {
  std::vector<spdlog::sink_ptr> sinks;
  sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
  absl::Status status;
  const std::string path = absl::StrCat(runtime_dir, "/worker.log");
  try {
    sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(
        path, /*truncate=*/true));
  } catch (const spdlog::spdlog_ex& e) {
    status = absl::FailedPreconditionError(
        absl::StrCat("cannot open ", path, ": ", e.what()));
  }
  auto logger =
      std::make_shared<spdlog::logger>("vmwp", sinks.begin(), sinks.end());
  logger->set_pattern(
      base::LogLinePattern("vmwp", vm_name.empty() ? "-" : vm_name));
  logger->set_level(spdlog::level::info);
  // The worker may be killed at any time: lose as little of the log as
  // possible.
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
  return status;
}

}  // namespace vmwp
