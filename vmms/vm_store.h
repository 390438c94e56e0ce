#ifndef HVSTACK_VMMS_VM_STORE_H_
#define HVSTACK_VMMS_VM_STORE_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/hvstack/v1/vm.pb.h"
#include "vmms/sqlite_db.h"

namespace vmms {

using hvstack::v1::Vm;
using hvstack::v1::VmState;

// One row of vm_state_history.
struct StateChange {
  VmState from;  // VM_STATE_UNSPECIFIED for the creation entry.
  VmState to;
  std::string reason;
  absl::Time time;
};

// The persistent VM definitions and their state, in vmms.db. Thread-safe. Every
// mutation is one transaction, and every state change writes its history row in
// the same transaction.
class VmStore {
 public:
  // Opens (creating and migrating) the database at `path`.
  static absl::StatusOr<std::unique_ptr<VmStore>> Open(const std::string& path);

  // Inserts a new VM (state, reason and times are set here: Off, "created").
  // `vm` carries name, uuid and config. ALREADY_EXISTS names a duplicate name.
  absl::StatusOr<Vm> Create(const Vm& vm);

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

  // An in-place guest reboot of a Running VM: increments reboot_count, sets
  // the state reason and adds a history row running -> running with
  // `reason`, in one transaction. FailedPrecondition unless Running.
  absl::StatusOr<Vm> RecordReboot(const std::string& uuid,
                                  const std::string& reason);

  // Records the worker process of a Starting VM. Not a state change: no history
  // row.
  absl::Status SetWorkerPid(const std::string& uuid, int64_t worker_pid);

  // Removes the VM; its history goes with it (ON DELETE CASCADE).
  absl::Status Delete(const std::string& uuid);

  absl::StatusOr<std::vector<StateChange>> History(const std::string& uuid);

 private:
  explicit VmStore(Database db) : db_(std::move(db)) {}

  absl::StatusOr<Vm> GetWhere(const char* column, const std::string& value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  Database db_ ABSL_GUARDED_BY(mu_);
};

// The stored spelling of a state ("off", "running", ...), also used in logs.
const char* StateName(VmState state);

}  // namespace vmms

#endif  // HVSTACK_VMMS_VM_STORE_H_
