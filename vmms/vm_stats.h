#ifndef HVSTACK_VMMS_VM_STATS_H_
#define HVSTACK_VMMS_VM_STATS_H_

#include "absl/time/time.h"
#include "proto/hvstack/v1/vm.pb.h"
#include "vmms/worker_manager.h"

namespace vmms {

// GetVmStats for `vm`: its record, plus, when it has a ready worker, that
// worker's GetStatus (per-VP CPU time and exits, console bytes, process CPU)
// within `timeout`, and its resident set from /proc/<pid>/statm. A worker
// that does not answer in time leaves `worker_error` set instead of waiting.
hvstack::v1::VmStats CollectVmStats(const hvstack::v1::Vm& vm,
                                    WorkerManager& workers,
                                    absl::Duration timeout);

}  // namespace vmms

#endif  // HVSTACK_VMMS_VM_STATS_H_
