#ifndef HVSTACK_VMMS_VM_MANAGER_H_
#define HVSTACK_VMMS_VM_MANAGER_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/hvstack/v1/vm.pb.h"
#include "vmms/libvirt_backend.h"
#include "vmms/op_lock.h"
#include "vmms/state_machine.h"
#include "vmms/vm_backend.h"
#include "vmms/vm_store.h"

namespace vmms {

struct VmManagerOptions {
  std::string state_dir;
  // Restart policy backoff: the first automatic restart waits
  // restart_backoff, each further one twice as long, at most
  // restart_backoff_max; a VM that stayed Running for restart_stable_after
  // starts again from restart_backoff.
  absl::Duration restart_backoff = absl::Seconds(1);
  absl::Duration restart_backoff_max = absl::Minutes(5);
  absl::Duration restart_stable_after = absl::Minutes(10);
};

// The backend-independent half of every VM operation: the VM's operation lock
// (VmOpLocks), the state table's check (CheckRequest), autostart and the
// restart policy; then the VM's backend (vm_backend.h) does the work and
// records the states it causes. The public service (VmServiceImpl) talks to
// this class only. Thread-safe.
class VmManager final : public VmBackendHost {
 public:
  VmManager(VmStore* store, VmManagerOptions options);
  // Shuts down (see Shutdown).
  ~VmManager() override;

  // The backends (not owned), set once before anything else is called:
  // hvstack's own workers, and libvirt when vmms runs with --libvirt-uri
  // (null: libvirt VMs' calls are FAILED_PRECONDITION saying how to enable
  // it).
  void SetBackends(VmBackend* hvstack, LibvirtBackend* libvirt);

  // Modifying operations wait for another one in progress on the same VM at
  // most until `deadline` (DEADLINE_EXCEEDED naming it). Stop does not wait:
  // a hard power-off is the way out of any operation (which then fails
  // ABORTED or FAILED_PRECONDITION).

  // Records a new VM (validated by the caller) after its backend accepted it.
  absl::StatusOr<Vm> Create(const Vm& vm);
  // Off/Crashed -> Starting -> Running (see VmBackend::Start).
  absl::StatusOr<Vm> Start(const std::string& name,
                           absl::Time deadline = absl::InfiniteFuture());
  absl::StatusOr<Vm> Stop(
      const std::string& name,
      const std::string& reason = "stopped by user (hard power-off)");
  // Removes an Off/Crashed VM's definition and runtime directory.
  absl::Status Delete(const std::string& name,
                      absl::Time deadline = absl::InfiniteFuture());
  absl::StatusOr<Vm> Pause(const std::string& name, absl::Time deadline);
  // Issue 14: SaveVm and DiscardSavedState (see VmBackend::Save).
  absl::StatusOr<Vm> Save(const std::string& name, absl::Time deadline);
  absl::StatusOr<Vm> DiscardSaved(const std::string& name, absl::Time deadline);
  absl::StatusOr<Vm> Resume(const std::string& name, absl::Time deadline);
  absl::StatusOr<Vm> Reset(const std::string& name, absl::Time deadline);
  absl::StatusOr<Vm> Reboot(const std::string& name, absl::Time deadline);
  absl::StatusOr<Vm> GracefulShutdown(const std::string& name,
                                      const ShutdownOptions& options,
                                      absl::Time deadline);
  // UpdateVm: `paths` are validated VmConfig field names, `config` the merged
  // configuration.
  absl::StatusOr<Vm> Update(const std::string& name,
                            const hvstack::v1::VmConfig& config,
                            const std::vector<std::string>& paths,
                            absl::Time deadline);

  // AddNic / RemoveNic: `change` (a store call) runs with the VM's operation
  // lock held, after the state table allowed a hardware change (Off or
  // Crashed; the store checks again in its transaction). Backends see the new
  // adapters at the VM's next start. `change` gets the VM as recorded.
  absl::StatusOr<Vm> ChangeNics(
      const std::string& name, absl::Time deadline,
      const std::function<absl::StatusOr<Vm>(const Vm&)>& change);

  // Reads (no operation lock).
  absl::StatusOr<Vm> Describe(const std::string& name);

  // For a libvirt VM, what its backend cannot give it with config `merged`
  // (LibvirtBackend::CheckHardware); OK for hvstack VMs.
  absl::Status CheckHardwareChange(const Vm& vm,
                                   const hvstack::v1::VmConfig& merged,
                                   absl::string_view what);

  // Adoption of libvirt domains (LibvirtBackend::AdoptionRecord): records the
  // domain as a VM (a `created` event saying it was adopted), then its real
  // state. FAILED_PRECONDITION without --libvirt-uri.
  absl::StatusOr<Vm> AdoptLibvirtDomain(const std::string& domain,
                                        const std::string& name);
  // Forgets a libvirt VM and leaves its domain to libvirt, as it is (a
  // `deleted` event saying so), in any state; returns the VM as it was.
  absl::StatusOr<Vm> ReleaseLibvirtDomain(const std::string& name,
                                          absl::Time deadline);
  // ListLibvirtDomains.
  absl::StatusOr<hvstack::v1::ListLibvirtDomainsResponse>
  ListUnmanagedLibvirtDomains();
  // Disks (disk_operations.cc): attach a checked disk (CheckDiskImage, serial
  // set) to, or detach one from, an Off or Crashed VM, under the VM's
  // operation lock (a start never sees half of it). Backend-independent: the
  // list is in the store; each backend opens the disks at its starts.
  absl::StatusOr<Vm> AttachDisk(const std::string& name,
                                const hvstack::v1::Disk& disk,
                                absl::Time deadline);
  absl::StatusOr<Vm> DetachDisk(const std::string& name,
                                const std::string& path,
                                const hvstack::v1::ScsiAddress& address,
                                absl::Time deadline);
  // Checkpoints (issue 14; checkpoint_operations.cc): of Off, Crashed and
  // Saved VMs of hvstack's own backend, under the VM's operation lock. A
  // Running or Paused VM is saved, checkpointed as Saved and restored (it
  // goes on running, or stays paused); apply and delete need it Off, Crashed
  // or Saved.
  absl::StatusOr<hvstack::v1::Checkpoint> CreateCheckpoint(
      const std::string& name, const std::string& checkpoint,
      absl::Time deadline);
  absl::StatusOr<std::vector<hvstack::v1::Checkpoint>> ListCheckpoints(
      const std::string& name);
  absl::StatusOr<Vm> ApplyCheckpoint(const std::string& name,
                                     const std::string& checkpoint,
                                     absl::Time deadline);
  absl::StatusOr<std::vector<hvstack::v1::Checkpoint>> DeleteCheckpoint(
      const std::string& name, const std::string& checkpoint,
      absl::Time deadline);
  // A VM as every reply shows it (what its backend adds to the stored row,
  // e.g. the sandbox identity): GetVm and every call that returns a Vm.
  Vm ForReply(Vm vm);
  absl::StatusOr<ConsoleSource> Console(const std::string& name);
  std::optional<ConsoleSource> NextConsole(const std::string& name,
                                           uint64_t generation,
                                           absl::Duration timeout);
  hvstack::v1::VmStats Stats(const Vm& vm, absl::Duration timeout);
  // Stats of every VM in `vms`; the backends are asked in parallel, so the
  // call takes about one `timeout` at worst however many VMs hang.
  std::vector<hvstack::v1::VmStats> ListStats(const std::vector<Vm>& vms,
                                              absl::Duration timeout);

  // Run once at start-up, before serving: every backend takes over its VMs
  // that a previous vmms left active (VmBackend::Reattach).
  absl::Status Reattach();
  // Starts every autostart VM that is Off or Crashed (and restarts those
  // whose policy restart was pending), in the background. Run once after
  // Reattach.
  void StartAutostartVms();
  // Stops every backend (recording `reason`), cancels pending restarts and
  // refuses further starts. Idempotent.
  void Shutdown(const std::string& reason = "vmms shut down (hard power-off)");

  // VmBackendHost: the restart policy.
  void VmEndedOnItsOwn(const Vm& final_vm, absl::Time up_since) override;

 private:
  VmBackend* BackendOf(const Vm& vm);
  // The VM as recorded, with its operation lock held for `request` (waiting
  // at most until `deadline`) and the state table's consent.
  struct LockedVm {
    VmOpLocks::Guard guard;
    Vm vm;
  };
  absl::StatusOr<LockedVm> Lock(const std::string& name, VmRequest request,
                                absl::Time deadline);
  // Start's body, with the VM's operation lock held. `reason` is recorded
  // with Starting.
  absl::StatusOr<Vm> StartLocked(const std::string& name,
                                 const std::string& reason);
  void RestartAfter(std::string name, std::string uuid, absl::Duration delay,
                    uint32_t attempt, std::string why);

  VmStore* const store_;
  const VmManagerOptions options_;
  VmBackend* hvstack_ = nullptr;
  VmBackend* libvirt_ = nullptr;
  // The libvirt backend itself (null without --libvirt-uri): adoption.
  LibvirtBackend* libvirt_backend_ = nullptr;
  // Stands in for libvirt_ when there is none.
  std::unique_ptr<VmBackend> missing_libvirt_;
  VmOpLocks op_locks_;

  absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  // Automatic restarts and autostarts waiting to run (joined by Shutdown).
  std::vector<std::thread> restarters_ ABSL_GUARDED_BY(mu_);
  // Consecutive automatic restarts per VM uuid (reset after a stable run or
  // a client start).
  std::map<std::string, uint32_t> restart_attempts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vmms

#endif  // HVSTACK_VMMS_VM_MANAGER_H_
