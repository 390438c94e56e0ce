// VmManager's disk operations: attach and detach while the VM is Off or
// Crashed (the store checks the state in its transaction).
#include <spdlog/spdlog.h>

#include "vmms/disk_table.h"
#include "vmms/vm_manager.h"

namespace vmms {

absl::StatusOr<Vm> VmManager::AttachDisk(const std::string& name,
                                         const hvstack::v1::Disk& disk,
                                         absl::Time deadline) {
  absl::StatusOr<VmOpLocks::Guard> guard =
      op_locks_.Acquire(name, "attach disk", deadline);
  if (!guard.ok()) return guard.status();
  absl::StatusOr<Vm> vm = store_->Get(name);
  if (!vm.ok()) return vm.status();
  hvstack::v1::VmConfig merged = vm->config();
  *merged.add_disks() = disk;
  if (absl::Status s = CheckHardwareChange(*vm, merged, "its disks"); !s.ok())
    return s;
  absl::StatusOr<Vm> updated = store_->AttachDisk(vm->uuid(), disk);
  if (!updated.ok()) return updated.status();
  spdlog::info("VM {}: disk {} attached", name, disk.path());
  return BackendOf(*updated)->Describe(*std::move(updated));
}

absl::StatusOr<Vm> VmManager::DetachDisk(
    const std::string& name, const std::string& path,
    const hvstack::v1::ScsiAddress& address, absl::Time deadline) {
  absl::StatusOr<VmOpLocks::Guard> guard =
      op_locks_.Acquire(name, "detach disk", deadline);
  if (!guard.ok()) return guard.status();
  absl::StatusOr<Vm> vm = store_->Get(name);
  if (!vm.ok()) return vm.status();
  absl::StatusOr<Vm> updated = store_->DetachDisk(vm->uuid(), path, address);
  if (!updated.ok()) return updated.status();
  spdlog::info("VM {}: disk {} detached", name,
               path.empty() ? ScsiAddressText(address) : path);
  return BackendOf(*updated)->Describe(*std::move(updated));
}

}  // namespace vmms
