// VmStore: the guest's own crash reports (the guest_crashes table, schema
// v10, and KIND_GUEST_CRASHED events).

#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "vmms/event_table.h"
#include "vmms/vm_store.h"

namespace vmms {

using google::protobuf::util::TimeUtil;

absl::Status VmStore::FillLastGuestCrash(Vm& vm) {
  absl::StatusOr<Statement> stmt =
      db_.Prepare("SELECT report FROM guest_crashes WHERE vm_uuid = ?");
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->Bind(1, vm.uuid()); !s.ok()) return s;
  absl::StatusOr<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  if (*row &&
      !vm.mutable_last_guest_crash()->ParseFromString(stmt->ColumnBlob(0))) {
    // Written by this vmms: unreadable means a damaged row; the events keep
    // what happened.
    vm.clear_last_guest_crash();
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> VmStore::RecordGuestCrash(
    const std::string& uuid, const hvstack::v1::GuestCrash& crash,
    std::optional<VmState> new_state, const std::string& reason) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Transaction> tx = Transaction::Begin(db_);
  if (!tx.ok()) return tx.status();
  absl::StatusOr<Vm> vm = GetWhere("uuid", uuid);
  if (!vm.ok()) return vm.status();
  const int64_t crash_us = TimeUtil::TimestampToMicroseconds(crash.time());
  absl::StatusOr<Statement> seen = db_.Prepare(
      "SELECT 1 FROM guest_crashes WHERE vm_uuid = ? AND time_us = ? AND "
      "vp = ?");
  if (!seen.ok()) return seen.status();
  if (absl::Status s = seen->BindAll(uuid, crash_us, crash.vp()); !s.ok())
    return s;
  absl::StatusOr<bool> already = seen->Step();
  if (!already.ok()) return already.status();
  if (*already) return false;

  absl::StatusOr<Statement> upsert = db_.Prepare(
      "INSERT INTO guest_crashes (vm_uuid, report, time_us, vp) "
      "VALUES (?, ?, ?, ?) ON CONFLICT (vm_uuid) DO UPDATE SET "
      "report = excluded.report, time_us = excluded.time_us, vp = excluded.vp");
  if (!upsert.ok()) return upsert.status();
  absl::Status s = upsert->BindAll(uuid);
  if (s.ok()) s = upsert->BindBlob(2, crash.SerializeAsString());
  if (s.ok()) s = upsert->Bind(3, crash_us);
  if (s.ok()) s = upsert->Bind(4, int64_t{crash.vp()});
  if (!s.ok()) return s;
  if (s = upsert->Run(); !s.ok()) return s;

  const int64_t now = absl::ToUnixMicros(absl::Now());
  absl::StatusOr<uint64_t> sequence = AddEvent(
      *vm, hvstack::v1::VmEvent::KIND_GUEST_CRASHED, vm->state(),
      absl::StrCat("guest crashed on vp", crash.vp(), ": ", crash.summary()),
      now, &crash);
  if (!sequence.ok()) return sequence.status();
  if (new_state.has_value()) {
    absl::StatusOr<std::pair<Vm, uint64_t>> changed =
        SetStateInTransaction(uuid, *new_state, reason, std::nullopt);
    if (!changed.ok()) return changed.status();
    sequence = changed->second;
  }
  if (s = tx->Commit(); !s.ok()) return s;
  PublishEvent(*sequence);
  return true;
}

}  // namespace vmms
