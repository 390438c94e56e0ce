#ifndef HVSTACK_VMMS_STATE_MACHINE_H_
#define HVSTACK_VMMS_STATE_MACHINE_H_

#include <string>

#include "absl/status/status.h"
#include "proto/hvstack/v1/vm.pb.h"

namespace vmms {

// The one table of what a VM's state allows (documented in vmms/README.md,
// "State machine"). Every RPC that changes a VM asks CheckRequest first, and
// VmStore::SetState refuses a transition that IsAllowedTransition does not
// list, so the table and the behaviour cannot drift apart.

// The requests that depend on the VM's state.
enum class VmRequest {
  kStart,
  kStop,
  kDelete,
  kPause,
  kResume,
  kReset,
  kReboot,
  kShutdown,
  // UpdateVm of a hardware field (vcpus, memory, kernel, cmdline, initrd).
  kUpdateHardware,
  // Issue 14: SaveVm (Running/Paused -> Saving -> Saved) and
  // DiscardSavedState (Saved -> Off). StartVm of a Saved VM restores it.
  kSave,
  kDiscardSaved,
  // Issue 14: CreateCheckpoint, ApplyCheckpoint, DeleteCheckpoint (Off,
  // Crashed or Saved VMs: nothing writes their disks meanwhile).
  kCheckpoint,
};

// "start", "stop", ..., as used in logs and in "operation X in progress".
const char* RequestName(VmRequest request);

// OK when `vm`'s state allows `request`; else FAILED_PRECONDITION naming the
// VM, its state and what to do, e.g. "VM 'web1' is paused; cannot shut it
// down: resume it first".
absl::Status CheckRequest(const hvstack::v1::Vm& vm, VmRequest request);

// Whether vmms may record `from` -> `to`. A VM whose worker dies may go from
// any state with a worker (Starting, Running, Paused, Stopping, Saving,
// Restoring) to Off or Crashed; the rest are listed in the table. Saved has
// no worker: it leaves through Restoring (StartVm) or to Off (discard).
bool IsAllowedTransition(hvstack::v1::VmState from, hvstack::v1::VmState to);

// States in which the VM has (or should have) a worker process.
bool HasWorker(hvstack::v1::VmState state);

}  // namespace vmms

#endif  // HVSTACK_VMMS_STATE_MACHINE_H_
