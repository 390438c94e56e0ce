#ifndef HVSTACK_VMMS_VM_STORE_H_
#define HVSTACK_VMMS_VM_STORE_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/hvstack/v1/vm.pb.h"
#include "vmms/sqlite_db.h"
#include "vmms/state_machine.h"

namespace vmms {

using hvstack::v1::Vm;
using hvstack::v1::VmState;

// One row of vm_state_history.
struct StateChange {
  VmState from;  // VM_STATE_UNSPECIFIED for the creation entry.
  VmState to;
  std::string reason;
  absl::Time time;
  // Who asked for it (see request_peer.h); empty for vmms's own decisions.
  std::string peer;
};

struct VmStoreOptions {
  // How many events the `events` table keeps (the newest); at least 1.
  int64_t event_retention = 10000;
};

// One disk of a checkpoint (vm_checkpoint_disks): the image holding its
// content at the checkpoint's moment, never written again. `owned`: an
// overlay vmms made under the VM's checkpoint directory.
struct CheckpointDisk {
  std::string path;
  hvstack::v1::DiskFormat format = hvstack::v1::DISK_FORMAT_UNSPECIFIED;
  bool owned = false;
};

struct CheckpointRecord {
  int64_t id = 0;
  int64_t parent_id = 0;               // 0: a root.
  hvstack::v1::Checkpoint checkpoint;  // parent and current filled in.
  std::vector<CheckpointDisk> disks;
};

// The persistent VM definitions and their state, in vmms.db. Thread-safe. Every
// mutation is one transaction, and every state change writes its history row in
// the same transaction, as does its row in the event log (`events`).
class VmStore {
 public:
  // Opens (creating and migrating) the database at `path`.
  static absl::StatusOr<std::unique_ptr<VmStore>> Open(
      const std::string& path, VmStoreOptions options = {});

  // Inserts a new VM (state, reason and times are set here: Off, "created").
  // `vm` carries name, uuid and config, its adapters normalized
  // (NormalizeNics); adapters without a MAC get a generated one.
  // ALREADY_EXISTS names a duplicate name; INVALID_ARGUMENT a MAC another
  // VM's adapter has. Nothing is stored on failure.
  // `reason` goes to the history and the `created` event (an adoption says
  // so).
  absl::StatusOr<Vm> Create(const Vm& vm,
                            const std::string& reason = "created");

  // NOT_FOUND names the VM.
  absl::StatusOr<Vm> Get(const std::string& name);
  absl::StatusOr<Vm> GetByUuid(const std::string& uuid);
  absl::StatusOr<std::vector<Vm>> List();

  // Records a state change and its history row; `worker_pid` replaces the
  // stored pid when given. Entering Starting resets the reboot counter (it
  // counts reboots since the last start).
  absl::StatusOr<Vm> SetState(const std::string& uuid, VmState state,
                              const std::string& reason,
                              std::optional<int64_t> worker_pid = std::nullopt);

  // Issue 14. A finished save: the vm_saved_states row (`info`) and the state
  // Saved with `reason`, in one transaction (the commit point of a save: the
  // files are in place before). DropSaved removes the row and enters
  // `new_state` (Off: discarded; Running: restored) in one transaction.
  absl::StatusOr<Vm> RecordSaved(const std::string& uuid,
                                 const hvstack::v1::SavedStateInfo& info,
                                 const std::string& reason);
  absl::StatusOr<Vm> DropSaved(
      const std::string& uuid, VmState new_state, const std::string& reason,
      std::optional<int64_t> worker_pid = std::nullopt);

  // An in-place guest reboot of a Running VM: increments reboot_count, sets
  // the state reason and adds a history row running -> running with
  // `reason`, in one transaction. FailedPrecondition unless Running.
  absl::StatusOr<Vm> RecordReboot(const std::string& uuid,
                                  const std::string& reason);

  // A crash the guest reported: it becomes the VM's last_guest_crash and a
  // KIND_GUEST_CRASHED event carrying it, and with `new_state` the VM enters
  // that state with `reason` (its history row and event follow the crash's),
  // all in one transaction. A report already recorded (same time and VP) is
  // not recorded again and changes nothing: false. (A worker's events are
  // replayed to a vmms that restarts, and a crash that ends the worker comes
  // in its exit report too.)
  absl::StatusOr<bool> RecordGuestCrash(
      const std::string& uuid, const hvstack::v1::GuestCrash& crash,
      std::optional<VmState> new_state = std::nullopt,
      const std::string& reason = "");

  // An event about the guest that changes nothing in the VM's row (e.g.
  // KIND_GUEST_HEARTBEAT): the VM's current state, `reason`.
  absl::Status RecordGuestEvent(const std::string& uuid,
                                hvstack::v1::VmEvent::Kind kind,
                                const std::string& reason);

  // Records the worker process of a Starting VM and its start time (field 22
  // of /proc/<pid>/stat, which identifies the process across vmms restarts).
  // Not a state change: no history row.
  // The VM's sandbox uid slot: the one in its row, else the lowest slot below
  // `slot_count` that no VM holds and for which `usable` is true (the
  // UidAllocator refuses ids of real accounts), recorded in the row. Slots
  // are freed with the VM's row. RESOURCE_EXHAUSTED when none is left.
  absl::StatusOr<uint32_t> AssignUidSlot(
      const std::string& uuid, const std::function<bool(uint32_t)>& usable,
      uint32_t slot_count);
  // The VM's uid slot; NOT_FOUND before its first sandboxed start.
  absl::StatusOr<uint32_t> UidSlot(const std::string& uuid);
  // Whether the VM's worker runs sandboxed (false: vmms --no-sandbox).
  absl::Status SetSandboxed(const std::string& uuid, bool sandboxed);
  absl::Status SetWorkerPid(const std::string& uuid, int64_t worker_pid,
                            int64_t start_ticks = 0);
  // The start time recorded with the worker pid (0 when none).
  absl::StatusOr<int64_t> WorkerStartTicks(const std::string& uuid);

  // Event log. Up to `limit` events after `after_sequence`, in order;
  // OUT_OF_RANGE when some of those were trimmed (see ReadEventsAfter).
  absl::StatusOr<std::vector<hvstack::v1::VmEvent>> ReadEvents(
      uint64_t after_sequence, int limit);
  // Blocks until an event with a sequence above `after_sequence` is committed
  // (true), `timeout` passes or the store is closing (false). Readers that
  // call ReadEvents after a true return never miss a commit: the condition is
  // on the committed sequence, not on a wake-up.
  bool AwaitEventAfter(uint64_t after_sequence, absl::Duration timeout);
  // Wakes every AwaitEventAfter for good (vmms is shutting down).
  void CloseEventWatchers();
  bool EventWatchersClosed();

  // Sets the VmConfig fields named in `paths` (VmConfig field names, already
  // validated) from `config`, and adds an `updated` event whose reason names
  // them, in one transaction. Hardware fields (anything but autostart and
  // restart_policy) need the VM Off or Crashed, checked in the transaction:
  // FAILED_PRECONDITION naming the state otherwise.
  absl::StatusOr<Vm> Update(const std::string& uuid,
                            const hvstack::v1::VmConfig& config,
                            const std::vector<std::string>& paths);

  // Disks (disk_table.h). AttachDisk appends `disk` (format resolved and
  // serial set by the caller; its address assigned here, see
  // AssignDiskAddress) to an Off or Crashed VM, DetachDisk removes the disk
  // with `path` (or, path empty, at `address`); each adds an `updated` event
  // naming the disk, in one transaction. FAILED_PRECONDITION naming the state
  // for a VM that is not Off or Crashed.
  absl::StatusOr<Vm> AttachDisk(const std::string& uuid,
                                const hvstack::v1::Disk& disk);
  absl::StatusOr<Vm> DetachDisk(const std::string& uuid,
                                const std::string& path,
                                const hvstack::v1::ScsiAddress& address);
  // Network adapters (nic_rows.h), only while the VM is Off or Crashed
  // (checked in the transaction: FAILED_PRECONDITION naming the state), each
  // with an `updated` event "nic added: 1 02:68:76:.. (bridge br0)" / "nic
  // removed: ...". AddNic: `nic` is normalized (NormalizeNic); it gets the
  // lowest free index and, if it has none, a generated MAC. RemoveNic: `mac`
  // in canonical form; NOT_FOUND naming it.
  absl::StatusOr<Vm> AddNic(const std::string& uuid,
                            const hvstack::v1::NicConfig& nic);
  absl::StatusOr<Vm> RemoveNic(const std::string& uuid, const std::string& mac);

  // Checkpoints (issue 14; vm_store_checkpoints.cc, schema v16). Each
  // mutation is one transaction with an `updated` event naming the
  // checkpoint; the VM must be in a state VmRequest::kCheckpoint allows
  // (checked again in the transaction). Files (overlays, saved-state copies)
  // are the caller's: made before, removed after the commit.
  //
  // The VM's checkpoints, parents before children (ids grow).
  absl::StatusOr<std::vector<CheckpointRecord>> Checkpoints(
      const std::string& uuid);
  // Adds `checkpoint` (its disks `frozen`) as a child of the current one and
  // makes it current; the VM's disks become `vm_disks` (the new overlays).
  // ALREADY_EXISTS when the VM has a checkpoint of that name.
  absl::StatusOr<Vm> RecordCheckpoint(
      const std::string& uuid, const hvstack::v1::Checkpoint& checkpoint,
      const std::vector<CheckpointDisk>& frozen,
      const std::vector<hvstack::v1::Disk>& vm_disks);
  // The VM takes `config`'s hardware (vcpus, memory, kernel, initrd, cmdline,
  // enlightenments) and `vm_disks`; Saved with `saved` (its files in place
  // already) or Off without; checkpoint `id` becomes current.
  absl::StatusOr<Vm> RecordCheckpointApplied(
      const std::string& uuid, int64_t id, const std::string& checkpoint_name,
      const hvstack::v1::VmConfig& config,
      const std::vector<hvstack::v1::Disk>& vm_disks,
      const std::optional<hvstack::v1::SavedStateInfo>& saved);
  // Removes checkpoint `id`: its children (and the current mark) go to its
  // parent.
  absl::StatusOr<Vm> RecordCheckpointDeleted(const std::string& uuid,
                                             int64_t id,
                                             const std::string& name);

  // Automatic restarts since a client last started the VM (not an event).
  absl::Status SetRestartCount(const std::string& uuid, uint32_t count);

  // Removes the VM; its history goes with it (ON DELETE CASCADE).
  // `reason` goes to the `deleted` event (a release says so).
  absl::Status Delete(const std::string& uuid,
                      const std::string& reason = "deleted");

  absl::StatusOr<std::vector<StateChange>> History(const std::string& uuid);

 private:
  VmStore(Database db, VmStoreOptions options, uint64_t last_event)
      : options_(options), db_(std::move(db)), last_event_(last_event) {}

  // Inserts an event in the current transaction.
  absl::StatusOr<uint64_t> AddEvent(
      const Vm& vm, hvstack::v1::VmEvent::Kind kind, VmState previous,
      const std::string& reason, int64_t time_us,
      const hvstack::v1::GuestCrash* crash = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // SetState's body, inside the caller's transaction: the VM after the change
  // and the event's sequence (publish it after the commit).
  absl::StatusOr<std::pair<Vm, uint64_t>> SetStateInTransaction(
      const std::string& uuid, VmState state, const std::string& reason,
      std::optional<int64_t> worker_pid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets vm.last_guest_crash from guest_crashes, if the VM has one.
  absl::Status FillLastGuestCrash(Vm& vm) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets vm.saved_state from vm_saved_states, if the VM has a row.
  absl::Status FillSavedState(Vm& vm) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After a commit: lets watchers see `sequence`.
  void PublishEvent(uint64_t sequence);

  absl::StatusOr<Vm> GetWhere(const char* column, const std::string& value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The end of AttachDisk/DetachDisk/AddNic/RemoveNic: update time, an
  // `updated` event with `reason`, commit.
  absl::StatusOr<Vm> CommitHardwareChange(const Vm& before,
                                          const std::string& reason,
                                          Transaction tx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A transaction opened on VM `uuid` after `request` was checked against
  // its state: the prologue of every change that must see the VM as it is.
  struct CheckedChange {
    Transaction tx;
    Vm before;
  };
  absl::StatusOr<CheckedChange> BeginChange(const std::string& uuid,
                                            VmRequest request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // AttachDisk/DetachDisk/AddNic/RemoveNic in one transaction: the
  // hardware-state check, `change` (returns the event's reason), then
  // CommitHardwareChange.
  absl::StatusOr<Vm> ChangeHardware(
      const std::string& uuid,
      const std::function<absl::StatusOr<std::string>(Database&, const Vm&)>&
          change);

  const VmStoreOptions options_;
  absl::Mutex mu_;
  Database db_ ABSL_GUARDED_BY(mu_);

  absl::Mutex events_mu_;
  uint64_t last_event_ ABSL_GUARDED_BY(events_mu_) = 0;
  bool closing_ ABSL_GUARDED_BY(events_mu_) = false;
};

// The stored spelling of a state ("off", "running", ...), also used in logs.
const char* StateName(VmState state);
// The inverse; VM_STATE_UNSPECIFIED for anything else.
VmState StateFromName(const std::string& name);
// "never", "on-failure", "always" (UNSPECIFIED is stored as "never").
const char* RestartPolicyName(hvstack::v1::RestartPolicy policy);
hvstack::v1::RestartPolicy RestartPolicyFromName(const std::string& name);
// "stop", "restart", "preserve" (UNSPECIFIED is stored as "stop").
const char* GuestCrashPolicyName(hvstack::v1::GuestCrashPolicy policy);
hvstack::v1::GuestCrashPolicy GuestCrashPolicyFromName(const std::string& name);

}  // namespace vmms

#endif  // HVSTACK_VMMS_VM_STORE_H_
