#ifndef HVSTACK_VMMS_VM_BACKEND_H_
#define HVSTACK_VMMS_VM_BACKEND_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "proto/hvstack/v1/vm.pb.h"
#include "vmms/console_feed.h"

namespace vmms {

using hvstack::v1::Vm;

// How ShutdownVm ends when the guest does not power off in time (or cannot be
// asked).
struct ShutdownOptions {
  absl::Duration timeout = absl::Seconds(60);
  // True: stop the VM hard; false: fail and leave it running.
  bool force_off_fallback = true;
};

// Where a VM's console can be read from right now.
struct ConsoleSource {
  // The running worker's WorkerService socket, when there is a worker that
  // reported ready.
  std::optional<std::string> worker_socket;
  // The retained log, for when there is no worker to ask.
  std::string console_log;
  // Which worker of the VM `worker_socket` belongs to (see NextConsole).
  uint64_t worker_generation = 0;
  // A console produced inside vmms (the libvirt backend's console stream)
  // while the VM runs; followers read it instead of a worker's socket.
  std::shared_ptr<ConsoleFeed> feed;
};

// What a backend tells the backend-independent part of vmms (VmManager).
class VmBackendHost {
 public:
  virtual ~VmBackendHost() = default;
  // The VM ended without a client asking for it (the guest powered off or
  // crashed, its worker or domain went away) and is recorded as `final_vm`
  // (Off or Crashed). `up_since` is when it last became Running (absl::Time()
  // when it never did). The restart policy may start it again.
  virtual void VmEndedOnItsOwn(const Vm& final_vm, absl::Time up_since) = 0;
};

// What runs a VM: hvstack's own worker (WorkerManager, vmwp per VM) or
// another virtualization stack (libvirt). vmms's state machine, operation
// locks, access control, event log, autostart and restart policy live in
// VmManager and are the same for every backend; a backend does the work and
// records the states the work causes through the VmStore (whose SetState
// refuses what the state table does not list).
//
// VmManager calls the lifecycle methods with the VM's operation lock held
// (VmOpLocks; Stop excepted: a hard power-off cuts through any operation) and
// only after CheckRequest allowed the request in the VM's recorded state.
// `vm` is the VM as recorded at that moment. Thread-safe.
class VmBackend {
 public:
  virtual ~VmBackend() = default;

  // "hvstack", "libvirt": in logs and messages.
  virtual const char* name() const = 0;

  // CreateVm, before the VM's row exists: whatever the backend keeps per VM
  // (a libvirt domain definition). An error leaves nothing behind.
  virtual absl::Status Create(const Vm& vm) = 0;
  // Off/Crashed -> Starting -> Running. Returns the VM as recorded when it
  // became Running, or the reason it did not (the VM is then Off with that
  // reason). `reason` is recorded with Starting.
  virtual absl::StatusOr<Vm> Start(const Vm& vm, const std::string& reason) = 0;
  // Hard power-off; returns the VM once Off. `reason` is recorded.
  virtual absl::StatusOr<Vm> Stop(const Vm& vm, const std::string& reason) = 0;
  virtual absl::StatusOr<Vm> Pause(const Vm& vm) = 0;
  virtual absl::StatusOr<Vm> Resume(const Vm& vm) = 0;
  // Hard reset: the VM stays Running (a `rebooted` event).
  virtual absl::StatusOr<Vm> Reset(const Vm& vm) = 0;
  // Graceful reboot through the guest, else a hard reset.
  virtual absl::StatusOr<Vm> Reboot(const Vm& vm) = 0;
  // Graceful power-off through the guest (see ShutdownOptions).
  virtual absl::StatusOr<Vm> GracefulShutdown(
      const Vm& vm, const ShutdownOptions& options) = 0;
  // Issue 14. Running/Paused -> Saving -> Saved (the VM's state to files in
  // vmms's state directory, the worker ends); returns the VM Saved. A Saved
  // VM's Start restores it (Restoring -> Running). DiscardSaved: Saved ->
  // Off, the files removed. Backends that cannot: UNIMPLEMENTED.
  virtual absl::StatusOr<Vm> Save(const Vm& vm) {
    return absl::UnimplementedError(absl::StrCat(
        "VM '", vm.name(), "': the ", name(), " backend cannot save VMs"));
  }
  virtual absl::StatusOr<Vm> DiscardSaved(const Vm& vm) {
    return absl::UnimplementedError(absl::StrCat(
        "VM '", vm.name(), "': the ", name(), " backend has no saved states"));
  }
  // DeleteVm of an Off/Crashed/Saved VM, before its row is removed: releases
  // what the backend holds for it. An error keeps the VM.
  virtual absl::Status Forget(const Vm& vm) = 0;
  // UpdateVm, before `merged` (validated) is written: what the backend must
  // do or refuse for the change of the fields named in `paths`.
  virtual absl::Status PrepareUpdate(const Vm& vm,
                                     const hvstack::v1::VmConfig& merged,
                                     const std::vector<std::string>& paths) = 0;

  // Reads: never wait for an operation in progress.
  // The VM as recorded, with what the backend adds (GetVm).
  virtual Vm Describe(Vm vm) = 0;
  virtual absl::StatusOr<ConsoleSource> Console(const Vm& vm) = 0;
  // After the console of worker `generation` ended: the VM's next console
  // once ready (a guest reboot replaced the worker), or nullopt when the VM
  // does not run any more (or nothing was ready within `timeout`).
  virtual std::optional<ConsoleSource> NextConsole(const Vm& vm,
                                                   uint64_t generation,
                                                   absl::Duration timeout) = 0;
  // GetVmStats: the record plus what the backend measures, within `timeout`.
  virtual hvstack::v1::VmStats Stats(const Vm& vm, absl::Duration timeout) = 0;

  // Once at start-up, before serving: takes over this backend's VMs among
  // `vms` that a previous vmms left active, or records how they ended.
  virtual absl::Status Reattach(const std::vector<Vm>& vms) = 0;
  // Stops (or leaves, by the backend's options) every running VM and refuses
  // further starts. Idempotent.
  virtual void Shutdown(const std::string& reason) = 0;
};

}  // namespace vmms

#endif  // HVSTACK_VMMS_VM_BACKEND_H_
