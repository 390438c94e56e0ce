#include "vmms/vm_stats.h"

#include <unistd.h>

#include <fstream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "vmms/nic_backend.h"
#include "vmms/worker_client.h"

namespace vmms {
namespace {

// Resident pages (second field of /proc/<pid>/statm) in bytes; 0 if gone.
uint64_t ResidentBytes(pid_t pid) {
  std::ifstream statm(absl::StrCat("/proc/", pid, "/statm"));
  uint64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return 0;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

hvstack::v1::VmStats CollectVmStats(const hvstack::v1::Vm& vm,
                                    WorkerManager& workers,
                                    absl::Duration timeout) {
  hvstack::v1::VmStats stats;
  stats.set_name(vm.name());
  stats.set_uuid(vm.uuid());
  stats.set_state(vm.state());
  stats.set_worker_pid(vm.worker_pid());
  stats.set_reboot_count(vm.reboot_count());
  stats.set_restart_count(vm.restart_count());
  std::optional<WorkerManager::LiveWorker> live = workers.Live(vm.uuid());
  if (!live.has_value()) return stats;
  if (vm.state() == hvstack::v1::VM_STATE_RUNNING ||
      vm.state() == hvstack::v1::VM_STATE_PAUSED) {
    const absl::Duration up = absl::Now() - live->ready_time;
    stats.mutable_uptime()->set_seconds(absl::ToInt64Seconds(up));
    stats.mutable_uptime()->set_nanos(
        static_cast<int32_t>(absl::ToInt64Nanoseconds(up % absl::Seconds(1))));
  }
  stats.set_worker_rss_bytes(ResidentBytes(live->pid));
  absl::StatusOr<hvstack::internal::WorkerStatus> status =
      QueryWorkerStatus(live->socket, timeout);
  if (!status.ok()) {
    stats.set_worker_error(std::string(status.status().message()));
    return stats;
  }
  stats.set_console_bytes(status->console_bytes());
  stats.set_worker_cpu_time_ns(status->cpu_time_ns());
  for (const hvstack::internal::VpRuntime& vp : status->vps()) {
    hvstack::v1::VpStats* out = stats.add_vps();
    out->set_index(vp.index());
    out->set_cpu_time_ns(vp.cpu_time_ns());
    out->set_total_exits(vp.total_exits());
    out->mutable_exits_by_reason()->insert(vp.exits_by_reason().begin(),
                                           vp.exits_by_reason().end());
  }
  AddNicStats(vm, *status, &stats);
  return stats;
}

hvstack::v1::VmStats WorkerManager::Stats(const Vm& vm,
                                          absl::Duration timeout) {
  return CollectVmStats(vm, *this, timeout);
}

}  // namespace vmms
