#ifndef HVSTACK_VMMS_NIC_BACKEND_H_
#define HVSTACK_VMMS_NIC_BACKEND_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/scoped_fd.h"
#include "proto/hvstack/internal/worker.pb.h"
#include "proto/hvstack/v1/vm.pb.h"

// vmms's half of a VM's network adapters on its own worker: one TAP device per
// adapter and worker start, handed to the worker as a descriptor (the worker
// opens nothing and stays in its empty network namespace). The devices are not
// persistent: the kernel removes each one when the worker's descriptor closes,
// however the worker ends; RemoveNicDevices and ReconcileNicDevices only sweep
// up what a crash between steps might leave.
namespace vmms {

// The worker finds adapter i's TAP descriptor at kWorkerFirstNicFd + i.
inline constexpr int kWorkerFirstNicFd = 40;

struct OpenedNics {
  // The TAP descriptors, in the order of `config`.
  std::vector<base::ScopedFd> taps;
  // WorkerConfig.nics: what the worker is told about each (tap_fd is the
  // number in the worker).
  std::vector<hvstack::internal::WorkerNic> config;
  // (descriptor here, number in the worker) for the spawn.
  std::vector<std::pair<int, int>> InheritedFds() const;
};

// Creates and configures the TAP devices of `vm`'s adapters
// (hostnet::CreateTap), removing a stale device of this VM's own of the same
// name first. FAILED_PRECONDITION naming the VM, the adapter (index, MAC), the
// host interface and the bridge when one cannot be made; the ones made before
// vanish with their descriptors.
absl::StatusOr<OpenedNics> OpenNics(const hvstack::v1::Vm& vm);

// After a worker of VM `uuid` ended: removes any of its adapters' devices that
// is still there (`indices`: the adapters it had). Logs what it removes.
void RemoveNicDevices(const std::string& vm_name, const std::string& uuid,
                      const std::vector<uint32_t>& indices);

// At vmms start, after taking over the running workers: removes every device
// with a vmms alias (HostInterfaceAlias) of a VM in `vms` for which
// `has_worker(uuid)` is false. Devices of VMs this vmms does not know belong
// to another vmms and stay. Returns how many it removed.
int ReconcileNicDevices(
    const std::vector<hvstack::v1::Vm>& vms,
    const std::function<bool(const std::string& uuid)>& has_worker);

// Vm.nics for GetVm / ListNics: each adapter's host interface and whether it
// exists now.
std::vector<hvstack::v1::NicStatus> NicStatuses(const hvstack::v1::Vm& vm);
// Sets vm.nics to NicStatuses(vm).
void FillNicStatuses(hvstack::v1::Vm& vm);

// GetVmStats: VmStats.nics from the worker's counters (WorkerStatus.nics),
// each named with its MAC and host interface from `vm`'s definition.
void AddNicStats(const hvstack::v1::Vm& vm,
                 const hvstack::internal::WorkerStatus& status,
                 hvstack::v1::VmStats* stats);

// CreateVm / AddNic: the adapter's bridge exists and is a bridge.
// INVALID_ARGUMENT naming `field` and the bridge otherwise.
absl::Status CheckNicBridge(const hvstack::v1::NicConfig& nic,
                            const std::string& field);

}  // namespace vmms

#endif  // HVSTACK_VMMS_NIC_BACKEND_H_
