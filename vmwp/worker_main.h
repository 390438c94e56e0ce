#ifndef HVSTACK_VMWP_WORKER_MAIN_H_
#define HVSTACK_VMWP_WORKER_MAIN_H_

#include <functional>

#include "proto/hvstack/internal/worker.pb.h"

namespace vmwp {

// vmwp's main: the per-VM worker process. See README.md.
//
//   vmwp --config=<runtime dir>/worker_config.pb [--ready-fd=N]
//
// Reads the config, opens its logs and the exit report, confines itself when
// the config asks (vmwp/sandbox), runs the VM and writes the report.
// `after_ready` is for test builds only (vmwp_testing; the production main
// passes nothing); it gets the VM's config.
using AfterReady =
    std::function<void(const hvstack::internal::WorkerConfig& config)>;
int WorkerMain(int argc, char** argv, AfterReady after_ready);

}  // namespace vmwp

#endif  // HVSTACK_VMWP_WORKER_MAIN_H_
