#ifndef HVSTACK_VMMS_WORKER_MANAGER_H_
#define HVSTACK_VMMS_WORKER_MANAGER_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/scoped_fd.h"
#include "proto/hvstack/internal/worker.pb.h"
#include "proto/hvstack/v1/vm.pb.h"
#include "vmms/disk_open.h"
#include "vmms/reboot_guard.h"
#include "vmms/runtime_paths.h"
#include "vmms/sandbox/zygote.h"
#include "vmms/vm_backend.h"
#include "vmms/vm_store.h"
#include "vmms/worker_exit.h"
#include "vmms/worker_sandbox.h"

namespace vmms {

// Removes a VM's saved-state files (final and temporary) and their
// directory (issue 14; worker_save.cc).
void RemoveSavedFiles(const RuntimePaths& paths);

struct WorkerManagerOptions {
  std::string state_dir;
  std::string kvm_device = "/dev/kvm";
  // --vmwp; empty means "look it up" (see LocateVmwp).
  std::string vmwp_flag;
  absl::Duration start_timeout = absl::Seconds(30);
  // False: vmms --no-sandbox, a developer switch. Workers then run as root,
  // unconfined (no uid, namespaces, seccomp or cgroup); every start logs a
  // warning and the VM's row says so (Vm.sandbox.enabled = false).
  bool sandbox = true;
  // Sandboxed workers are forked by a fork server vmms keeps warm (`vmwp
  // --zygote-fd=3`, vmms/sandbox/zygote.h) instead of exec'd; false: always
  // exec (vmms --no-zygote).
  bool zygote = true;
};

// Starts, stops and supervises the vmwp processes, one per running VM, and
// records every state change of a VM that has (or had) a worker in the VmStore.
// Thread-safe.
//
// Each worker has one supervisor thread that alone reads its ready pipe, reaps
// it and records its outcome; that is what keeps Starting -> Running -> Off in
// order even for a worker that is ready and gone within a millisecond.
class WorkerManager final : public VmBackend {
 public:
  // `host` (may be null) hears about VMs that ended on their own (the restart
  // policy).
  WorkerManager(VmStore* store, WorkerManagerOptions options,
                VmBackendHost* host = nullptr);
  // Stops every worker (see Shutdown).
  ~WorkerManager() override;

  // VmBackend. The lifecycle calls come with the VM's operation lock held
  // and the state table's consent (VmManager); Stop cuts through.
  const char* name() const override { return "hvstack"; }
  absl::Status Create(const Vm&) override { return absl::OkStatus(); }
  // Off/Crashed -> Starting -> Running: a fresh worker, ready.
  absl::StatusOr<Vm> Start(const Vm& vm, const std::string& reason) override;
  // Hard power-off of a VM with a worker; returns the VM once Off.
  absl::StatusOr<Vm> Stop(const Vm& vm, const std::string& reason) override;
  // Running -> Paused -> Running (worker Pause / Resume).
  absl::StatusOr<Vm> Pause(const Vm& vm) override;
  absl::StatusOr<Vm> Resume(const Vm& vm) override;
  // Hard reset (Running or Paused): the worker is killed and a fresh one
  // started through RespawnWorker; the VM stays Running (a `rebooted` event).
  absl::StatusOr<Vm> Reset(const Vm& vm) override;
  // Graceful reboot through the guest's shutdown channel, else a hard reset.
  absl::StatusOr<Vm> Reboot(const Vm& vm) override;
  absl::StatusOr<Vm> GracefulShutdown(const Vm& vm,
                                      const ShutdownOptions& options) override;
  // Issue 14 (worker_save.cc). Save: the worker gets two files in the VM's
  // saved directory through its handoff socket, writes the VM's state and
  // memory there (WorkerService.SaveState) and ends; vmms syncs and renames
  // them and records Saved with what they hold (vm_saved_states) in one
  // transaction. A save that fails leaves the VM as it was while its worker
  // lives; a worker that dies during the save leaves it as its death says
  // (Crashed, or Off when stopped) and no saved state. Start of a Saved VM
  // restores it (Launch with LaunchMode.restore).
  absl::StatusOr<Vm> Save(const Vm& vm) override;
  absl::StatusOr<Vm> DiscardSaved(const Vm& vm) override;
  // Joins the finished supervisor of an Off/Crashed/Saved VM.
  absl::Status Forget(const Vm& vm) override;
  // A running worker is told a new on_guest_crash at once (best effort: a
  // worker that does not answer keeps the old action until its next start,
  // which the log says).
  absl::Status PrepareUpdate(const Vm& vm, const hvstack::v1::VmConfig& merged,
                             const std::vector<std::string>& paths) override;
  // The VM with its sandbox identity filled in.
  Vm Describe(Vm vm) override;
  absl::StatusOr<ConsoleSource> Console(const Vm& vm) override;
  // After the console stream of worker `generation` ended: the console of the
  // VM's next worker once it is ready (a guest reboot made vmms start a fresh
  // one), or nullopt when the VM is not running any more (or no new worker
  // was ready within `timeout`). Console proxies use it to follow a VM across
  // reboots.
  std::optional<ConsoleSource> NextConsole(const Vm& vm, uint64_t generation,
                                           absl::Duration timeout) override;
  // vm_stats.h.
  hvstack::v1::VmStats Stats(const Vm& vm, absl::Duration timeout) override;
  // Takes over the workers of VMs among `vms` that a previous vmms recorded
  // Starting/Running/Stopping (see worker_reattach.cc). A worker is ours when
  // its pid is alive with the start time recorded at spawn and its socket
  // answers GetStatus with the VM's uuid; it is then supervised (pidfd), its
  // events and console followed, as if we had started it. A worker that died
  // meanwhile is recorded with the reason from its exit report, else Crashed
  // "worker exited while vmms was down".
  absl::Status Reattach(const std::vector<Vm>& vms) override;
  // Stops all workers (recording `reason`) and refuses further starts.
  // Idempotent.
  void Shutdown(const std::string& reason) override;

  // The live, ready worker's socket and pid, for reads (stats); nullopt
  // without one.
  struct LiveWorker {
    std::string socket;
    pid_t pid;
    absl::Time ready_time;
  };
  std::optional<LiveWorker> Live(const std::string& uuid);
  const WorkerManagerOptions& options() const { return options_; }

 private:
  struct Worker {
    std::string uuid;
    std::string name;
    RuntimePaths paths;
    pid_t pid = 0;
    // Readable once the process has exited; signals go through it, so a
    // recycled pid is never hit.
    base::ScopedFd pidfd;
    // False for a worker taken over after a vmms restart: it is not our child,
    // so there is no wait status, only its exit report.
    bool is_child = true;
    // Started by RespawnWorker for a VM that stays Running (guest reboot).
    bool respawned = false;
    // Continues a Saved VM (its state is Restoring until ready; a restore
    // that fails leaves the VM Saved).
    bool restoring = false;
    // The qemu-nbd processes serving its qcow2/VHDX disks (our children).
    std::vector<pid_t> nbd_pids;
    // Its writable images: free again only once their locks are gone
    // (AwaitImagesUnlocked).
    std::vector<std::string> writable_images;
    // Each hands the worker its connection to one of them when it asks.
    std::vector<std::unique_ptr<NbdConnector>> nbd_connectors;
    // The indices of the VM's network adapters when it started: their TAP
    // devices are checked for leftovers when it ends (nic_backend.h).
    std::vector<uint32_t> nic_indices;
    // Unique per WorkerManager; a respawned worker has a new one.
    uint64_t generation = 0;
    // Reboot-loop protection, handed from each worker to the next one of the
    // same run of the VM; only the current worker's supervisor touches it.
    std::shared_ptr<RebootGuard> reboot_guard;
    // The worker this one replaced: its supervisor thread (which started
    // this one) is joined by this worker's supervisor.
    std::shared_ptr<Worker> predecessor;
    base::ScopedFd ready_pipe;  // Owned by the supervisor thread once it runs.
    // Sandboxed workers: the read end of the SIGSYS reporter's pipe.
    base::ScopedFd violation_pipe;
    // Sandboxed workers: written once the supervisor put the worker into its
    // cgroup (the worker waits for it before its lock-down).
    base::ScopedFd cgroup_joined;
    std::thread supervisor;

    // Conditions for mu.Await*.
    bool ReadyOrExited() const ABSL_SHARED_LOCKS_REQUIRED(mu) {
      return ready || exited;
    }
    bool Exited() const ABSL_SHARED_LOCKS_REQUIRED(mu) { return exited; }

    mutable absl::Mutex mu;
    bool ready ABSL_GUARDED_BY(mu) = false;
    // Reaped and its final state recorded. Until then `pid` is ours to signal.
    bool exited ABSL_GUARDED_BY(mu) = false;
    // Set when vmms decided to stop it; the recorded reason.
    std::optional<std::string> stop_reason ABSL_GUARDED_BY(mu);
    // Set by ResetVm before it kills the worker: its end is a respawn.
    std::optional<std::string> reset_reason ABSL_GUARDED_BY(mu);
    // A client asked the guest to shut down: its power-off is not a
    // restart-policy case.
    bool shutdown_requested ABSL_GUARDED_BY(mu) = false;
    // A save is in progress: when the worker ends, the supervisor leaves
    // recording its final state to Save (`save_outcome`, and whether the
    // exit report said SAVED).
    bool saving ABSL_GUARDED_BY(mu) = false;
    std::optional<WorkerOutcome> save_outcome ABSL_GUARDED_BY(mu);
    bool exit_saved ABSL_GUARDED_BY(mu) = false;
    // When it became ready (for a reattached one: when it was taken over).
    absl::Time ready_time ABSL_GUARDED_BY(mu);
    absl::Status start_error ABSL_GUARDED_BY(mu);
    Vm running_vm ABSL_GUARDED_BY(mu);

    // The event subscription (WatchEvents) of a ready worker.
    absl::Mutex events_mu;
    bool process_gone ABSL_GUARDED_BY(events_mu) = false;
    // The worker's sequence of the last guest event recorded (a replay after
    // a reconnect repeats earlier ones).
    uint64_t guest_events_recorded ABSL_GUARDED_BY(events_mu) = 0;
    grpc::ClientContext* events_context ABSL_GUARDED_BY(events_mu) = nullptr;
  };

  // Body of a worker's supervisor thread.
  void Supervise(Worker* worker);
  // The VM's worker when it is ready and not exited or being stopped; else
  // FAILED_PRECONDITION naming the VM.
  absl::StatusOr<std::shared_ptr<Worker>> ReadyWorker(const Vm& vm);
  // Kills the VM's worker so that its supervisor respawns it (hard reset).
  absl::StatusOr<Vm> HardReset(const Vm& vm, const std::string& reason);
  // After a worker ended and its final state was recorded: tells the host
  // when nobody asked for it (the restart policy's case).
  void ReportEnd(Worker* worker, const Vm& final_vm);
  // Takes over one VM's worker at start-up (Reattach).
  absl::Status ReattachVm(const Vm& vm) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Subscribes to a ready worker's events and records them (reboots) until
  // its event stream ends or the process is gone. The supervisor joins it
  // before recording the worker's final state.
  void WatchEvents(Worker* worker);
  void HandleWorkerEvent(Worker& worker,
                         const hvstack::internal::WorkerEvent& event);
  // Records a guest crash report (event or exit report; once), with the
  // Paused state its PAUSE action leads to.
  void RecordGuestCrash(Worker& worker,
                        const hvstack::internal::GuestCrashReport& report);
  // Asks the worker to stop, then kills it after the grace period; returns once
  // it is reaped.
  absl::Status StopWorker(Worker* worker, const std::string& reason);
  // What Launch does differently for a respawn.
  struct LaunchMode {
    bool respawn = false;
    // Issue 14: continue the Saved VM from its files (Restoring).
    bool restore = false;
    // Recorded with Starting (not for a respawn).
    std::string start_reason = "start requested";
    hvstack::internal::PersistentDeviceState persistent;
  };
  absl::StatusOr<std::shared_ptr<Worker>> Launch(const Vm& vm,
                                                 const LaunchMode& mode)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Replaces `old` (the VM's current worker, reaped, not being stopped) with a
  // fresh worker for the same VM, which stays Running: records the reboot
  // (reboot_count + 1, history "guest rebooted: <reason>", KIND_REBOOTED),
  // unless the reboot guard says the guest is looping (then an error, and the
  // caller records Crashed). The new worker starts from `persistent` (CMOS
  // state) and appends to the console log; console proxies follow it
  // (NextConsole). The one place a VM gets a new worker while it runs: guest
  // resets now, and the Reset/Reboot RPCs and restart policy later.
  absl::Status RespawnWorker(
      Worker* old, const std::string& reason,
      const hvstack::internal::PersistentDeviceState& persistent)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records Off with `reason` after a failed launch and returns `error`.
  absl::Status FailLaunch(const Vm& vm, const std::string& reason,
                          absl::Status error);

  // Fills in Vm.sandbox's uid/gid from the VM's slot.
  Vm WithSandboxIdentity(Vm vm) const;

  VmStore* const store_;
  const WorkerManagerOptions options_;
  VmBackendHost* const host_;
  // vmms's half of the sandbox; null with --no-sandbox or when the host
  // cannot sandbox (then `sandbox_error_` says why and starts fail).
  std::unique_ptr<SandboxHost> sandbox_;
  // Who holds which disk image (disk_open.h).
  DiskHolders disk_holders_;
  absl::Status sandbox_error_;
  // The warm fork server for sandboxed workers (started with vmms, restarted
  // after it dies); null with --no-zygote or before vmwp was found.
  std::unique_ptr<sandbox::ZygoteKeeper> zygote_ ABSL_GUARDED_BY(mu_);

  absl::Mutex mu_;
  // By VM uuid. Entries stay after the worker exited (so the thread can be
  // joined) until the VM is started again, deleted, or vmms shuts down.
  std::map<std::string, std::shared_ptr<Worker>> workers_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_generation_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace vmms

#endif  // HVSTACK_VMMS_WORKER_MANAGER_H_
