#ifndef HVSTACK_VMMS_WORKER_FILES_H_
#define HVSTACK_VMMS_WORKER_FILES_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "proto/hvstack/internal/worker.pb.h"

namespace vmms {

// Writes `config` to `path` atomically (temporary file, then rename), so that a
// worker never reads half a configuration.
absl::Status WriteWorkerConfig(const std::string& path,
                               const hvstack::internal::WorkerConfig& config);

// Reads the worker's exit report; nullopt when there is none or it cannot be
// parsed (both mean the worker died without saying why).
std::optional<hvstack::internal::WorkerExitReport> ReadExitReport(
    const std::string& path);

// The last `max_bytes` of the file at `path`; empty when it does not exist.
std::string ReadTail(const std::string& path, size_t max_bytes);

// The last `max_bytes` of the console log, which vmwp rotates to `<path>.1`
// when it grows too big: a log that was just rotated is topped up from the
// previous file.
std::string ReadConsoleTail(const std::string& path, size_t max_bytes);

}  // namespace vmms

#endif  // HVSTACK_VMMS_WORKER_FILES_H_
