#ifndef HVSTACK_VMWP_STORAGE_CONFIG_H_
#define HVSTACK_VMWP_STORAGE_CONFIG_H_

// The VM's SCSI controllers from WorkerConfig.disks: one storvsp controller
// per distinct `controller` number (in increasing order), each disk a LUN at
// its (target, lun) over the descriptor vmms handed over (a raw image on
// io_uring, or a connected NBD socket). The worker opens nothing.

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/hvstack/internal/worker.pb.h"
#include "vmwp/vmbus/guest_pages.h"
#include "vmwp/vmbus/vsp.h"
#include "vmwp/vsp/storage/storvsp.h"

namespace vmwp {

struct StorageControllers {
  // Sorted by controller number.
  std::vector<uint32_t> numbers;
  std::vector<std::unique_ptr<vsp::storage::StorageController>> controllers;
};

// The instance GUID of SCSI controller `number`: fixed, so that the guest
// sees the same controller across boots.
vmbus::Guid StorageControllerInstance(uint32_t number);

// Takes ownership of every disk's descriptor (also on failure). Errors name
// the disk (display_name) and say what is wrong with it: INVALID_ARGUMENT
// for a bad configuration, the backend's error otherwise.
absl::StatusOr<StorageControllers> BuildStorageControllers(
    const google::protobuf::RepeatedPtrField<hvstack::internal::WorkerDisk>&
        disks,
    vmbus::GuestPages& memory, uint32_t vp_count,
    std::function<absl::StatusOr<uint32_t>(vmbus::Vsp*)> add_channel);

}  // namespace vmwp

#endif  // HVSTACK_VMWP_STORAGE_CONFIG_H_
