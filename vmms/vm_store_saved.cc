// VmStore: saved states (issue 14). A save becomes real in one transaction:
// the vm_saved_states row and the state Saved (with its history row and
// event) together; the files were written, synced and renamed before.

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/util/time_util.h"
#include "vmms/vm_store.h"

namespace vmms {

absl::Status VmStore::FillSavedState(Vm& vm) {
  absl::StatusOr<Statement> stmt = db_.Prepare(
      "SELECT save_time_us, saved_from, state_file, memory_file, state_bytes, "
      "memory_pages_written, memory_pages_total, save_duration_us "
      "FROM vm_saved_states WHERE vm_uuid = ?");
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->Bind(1, vm.uuid()); !s.ok()) return s;
  absl::StatusOr<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::OkStatus();
  hvstack::v1::SavedStateInfo* info = vm.mutable_saved_state();
  *info->mutable_save_time() =
      google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(
          stmt->ColumnInt64(0));
  info->set_saved_from(StateFromName(stmt->ColumnText(1)));
  info->set_state_file(stmt->ColumnText(2));
  info->set_memory_file(stmt->ColumnText(3));
  info->set_state_bytes(static_cast<uint64_t>(stmt->ColumnInt64(4)));
  info->set_memory_pages_written(static_cast<uint64_t>(stmt->ColumnInt64(5)));
  info->set_memory_pages_total(static_cast<uint64_t>(stmt->ColumnInt64(6)));
  info->set_save_duration_us(static_cast<uint64_t>(stmt->ColumnInt64(7)));
  return absl::OkStatus();
}

absl::StatusOr<Vm> VmStore::RecordSaved(const std::string& uuid,
                                        const hvstack::v1::SavedStateInfo& info,
                                        const std::string& reason) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Transaction> tx = Transaction::Begin(db_);
  if (!tx.ok()) return tx.status();
  absl::StatusOr<Statement> insert = db_.Prepare(
      "INSERT OR REPLACE INTO vm_saved_states (vm_uuid, save_time_us, "
      "saved_from, state_file, memory_file, state_bytes, "
      "memory_pages_written, memory_pages_total, save_duration_us) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  if (!insert.ok()) return insert.status();
  if (absl::Status s = insert->BindAll(
          uuid,
          google::protobuf::util::TimeUtil::TimestampToMicroseconds(
              info.save_time()),
          StateName(info.saved_from()), info.state_file(), info.memory_file(),
          info.state_bytes(), info.memory_pages_written(),
          info.memory_pages_total(), info.save_duration_us());
      !s.ok()) {
    return s;
  }
  if (absl::Status s = insert->Run(); !s.ok()) return s;
  absl::StatusOr<std::pair<Vm, uint64_t>> changed = SetStateInTransaction(
      uuid, hvstack::v1::VM_STATE_SAVED, reason, int64_t{0});
  if (!changed.ok()) return changed.status();
  if (absl::Status s = tx->Commit(); !s.ok()) return s;
  PublishEvent(changed->second);
  return changed->first;
}

absl::StatusOr<Vm> VmStore::DropSaved(const std::string& uuid,
                                      VmState new_state,
                                      const std::string& reason,
                                      std::optional<int64_t> worker_pid) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Transaction> tx = Transaction::Begin(db_);
  if (!tx.ok()) return tx.status();
  absl::StatusOr<Statement> drop =
      db_.Prepare("DELETE FROM vm_saved_states WHERE vm_uuid = ?");
  if (!drop.ok()) return drop.status();
  if (absl::Status s = drop->Bind(1, uuid); !s.ok()) return s;
  if (absl::Status s = drop->Run(); !s.ok()) return s;
  absl::StatusOr<std::pair<Vm, uint64_t>> changed =
      SetStateInTransaction(uuid, new_state, reason, worker_pid);
  if (!changed.ok()) return changed.status();
  if (absl::Status s = tx->Commit(); !s.ok()) return s;
  PublishEvent(changed->second);
  return changed->first;
}

}  // namespace vmms
