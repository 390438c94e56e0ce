#ifndef HVSTACK_VMWP_SAVED_VM_H_
#define HVSTACK_VMWP_SAVED_VM_H_

// A VM's whole state, gathered from (and given back to) its components
// (issue 14): the partition (vid), the emulated devices and VMBus with its
// VSPs, in one hvstack.saved.SavedVm (vmwp/saved_state.proto). The worker
// drives the order (pause, quiesce, capture, write; or build, restore, run);
// this file only knows the components.

#include <array>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/hvstack/internal/worker.pb.h"
#include "vid/partition.h"
#include "vmwp/devices/acpi_pm1_event.h"
#include "vmwp/devices/acpi_power_port.h"
#include "vmwp/devices/cmos_rtc.h"
#include "vmwp/devices/i8042.h"
#include "vmwp/devices/uart16550.h"
#include "vmwp/saved_config.h"
#include "vmwp/saved_state.pb.h"
#include "vmwp/vmbus_host.h"

namespace vmwp {

struct VmParts {
  vid::Partition* partition = nullptr;
  Uart16550* com1 = nullptr;
  I8042* i8042 = nullptr;
  CmosRtc* rtc = nullptr;
  AcpiPm1Event* pm1_event = nullptr;
  AcpiPowerPort* power = nullptr;
  VmbusHost* vmbus = nullptr;  // enlightened VMs only
};

// The state of every part. The VPs must be held and VMBus quiesced.
absl::StatusOr<hvstack::saved::SavedVm> CaptureVm(
    const VmParts& parts, const hvstack::internal::WorkerConfig& config,
    const vid::SaveId& save_id);

// The devices' and VMBus's state back (the partition was built by
// vid::Partition::Restore). Before any VP runs.
absl::Status RestoreParts(const VmParts& parts,
                          const hvstack::saved::SavedVm& saved);

// The save id of `saved` (InvalidArgument unless it has 16 bytes).
absl::StatusOr<vid::SaveId> SaveIdOf(const hvstack::saved::SavedVm& saved);

}  // namespace vmwp

#endif  // HVSTACK_VMWP_SAVED_VM_H_
