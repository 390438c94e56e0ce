#ifndef HVSTACK_VMWP_WORKER_LOGGING_H_
#define HVSTACK_VMWP_WORKER_LOGGING_H_

#include <string>

#include "absl/status/status.h"

namespace vmwp {

// Makes spdlog's default logger (which vid and hvcore log through too) write to
// stderr and to <runtime_dir>/worker.log, each line tagged with the VM's name.
// Before this is called, logging goes to stderr only. Returns an error if
// worker.log cannot be created; stderr logging is set up regardless.
absl::Status SetUpWorkerLogging(const std::string& runtime_dir,
                                const std::string& vm_name);

}  // namespace vmwp

#endif  // HVSTACK_VMWP_WORKER_LOGGING_H_
