// VmStore: checkpoints (issue 14, schema v16). Each mutation is one
// transaction that also changes the VM (its disks, its configuration, its
// state) and adds an `updated` event naming the checkpoint; the files were
// made before (and are removed after) by the caller, so a crash leaves either
// the old records or the new ones, each with its files present.

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/util/time_util.h"
#include "vmms/disk_table.h"
#include "vmms/state_machine.h"
#include "vmms/vm_store.h"

namespace vmms {
namespace {

using google::protobuf::util::TimeUtil;

// Replaces the VM's disk rows with `disks`, in order.
absl::Status ReplaceDisks(Database& db, const std::string& uuid,
                          const std::vector<hvstack::v1::Disk>& disks) {
  absl::StatusOr<Statement> drop =
      db.Prepare("DELETE FROM vm_disks WHERE vm_uuid = ?");
  if (!drop.ok()) return drop.status();
  if (absl::Status s = drop->Bind(1, uuid); !s.ok()) return s;
  if (absl::Status s = drop->Run(); !s.ok()) return s;
  for (const hvstack::v1::Disk& d : disks) {
    if (absl::Status s = AppendDisk(db, uuid, d); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Exec(Database& db, const char* sql, int64_t a,
                  const std::string& b) {
  absl::StatusOr<Statement> stmt = db.Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->BindAll(a, b); !s.ok()) return s;
  return stmt->Run();
}

// The current checkpoint's id, 0 without one.
absl::StatusOr<int64_t> CurrentId(Database& db, const std::string& uuid) {
  absl::StatusOr<Statement> stmt = db.Prepare(
      "SELECT id FROM vm_checkpoints WHERE vm_uuid = ? AND is_current = 1");
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->Bind(1, uuid); !s.ok()) return s;
  absl::StatusOr<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  return *row ? stmt->ColumnInt64(0) : int64_t{0};
}

absl::Status MakeCurrent(Database& db, const std::string& uuid, int64_t id) {
  if (absl::Status s = Exec(db,
                            "UPDATE vm_checkpoints SET is_current = 0 "
                            "WHERE is_current = ? AND vm_uuid = ?",
                            1, uuid);
      !s.ok()) {
    return s;
  }
  if (id == 0) return absl::OkStatus();
  return Exec(db,
              "UPDATE vm_checkpoints SET is_current = 1 WHERE id = ? AND "
              "vm_uuid = ?",
              id, uuid);
}

}  // namespace

absl::StatusOr<std::vector<CheckpointRecord>> VmStore::Checkpoints(
    const std::string& uuid) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> stmt = db_.Prepare(
      "SELECT c.id, COALESCE(c.parent_id, 0), c.name, COALESCE(p.name, ''), "
      "c.create_time_us, c.vm_state, c.config, c.saved_state, c.is_current "
      "FROM vm_checkpoints c LEFT JOIN vm_checkpoints p ON p.id = c.parent_id "
      "WHERE c.vm_uuid = ? ORDER BY c.id");
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->Bind(1, uuid); !s.ok()) return s;
  std::vector<CheckpointRecord> out;
  while (true) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    CheckpointRecord r;
    r.id = stmt->ColumnInt64(0);
    r.parent_id = stmt->ColumnInt64(1);
    hvstack::v1::Checkpoint& c = r.checkpoint;
    c.set_name(stmt->ColumnText(2));
    c.set_parent(stmt->ColumnText(3));
    *c.mutable_create_time() =
        TimeUtil::MicrosecondsToTimestamp(stmt->ColumnInt64(4));
    c.set_vm_state(StateFromName(stmt->ColumnText(5)));
    if (!c.mutable_config()->ParseFromString(stmt->ColumnBlob(6))) {
      return absl::DataLossError(absl::StrCat(
          "checkpoint '", c.name(), "': its stored configuration is damaged"));
    }
    if (!stmt->ColumnIsNull(7) &&
        !c.mutable_saved_state()->ParseFromString(stmt->ColumnBlob(7))) {
      return absl::DataLossError(absl::StrCat(
          "checkpoint '", c.name(), "': its stored saved state is damaged"));
    }
    c.set_current(stmt->ColumnInt64(8) != 0);
    out.push_back(std::move(r));
  }
  absl::StatusOr<Statement> disks = db_.Prepare(
      "SELECT d.checkpoint_id, d.path, d.format, d.owned "
      "FROM vm_checkpoint_disks d JOIN vm_checkpoints c "
      "ON c.id = d.checkpoint_id WHERE c.vm_uuid = ? "
      "ORDER BY d.checkpoint_id, d.position");
  if (!disks.ok()) return disks.status();
  if (absl::Status s = disks->Bind(1, uuid); !s.ok()) return s;
  while (true) {
    absl::StatusOr<bool> row = disks->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    const int64_t id = disks->ColumnInt64(0);
    for (CheckpointRecord& r : out) {
      if (r.id != id) continue;
      r.disks.push_back({disks->ColumnText(1),
                         DiskFormatFromName(disks->ColumnText(2)),
                         disks->ColumnInt64(3) != 0});
    }
  }
  return out;
}

absl::StatusOr<Vm> VmStore::RecordCheckpoint(
    const std::string& uuid, const hvstack::v1::Checkpoint& checkpoint,
    const std::vector<CheckpointDisk>& frozen,
    const std::vector<hvstack::v1::Disk>& vm_disks) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<CheckedChange> begun =
      BeginChange(uuid, VmRequest::kCheckpoint);
  if (!begun.ok()) return begun.status();
  Transaction& tx = begun->tx;
  const Vm& before = begun->before;
  absl::StatusOr<int64_t> parent = CurrentId(db_, uuid);
  if (!parent.ok()) return parent.status();
  absl::StatusOr<Statement> insert = db_.Prepare(
      "INSERT INTO vm_checkpoints (vm_uuid, name, parent_id, create_time_us, "
      "vm_state, config, saved_state, is_current) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, 0)");
  if (!insert.ok()) return insert.status();
  absl::Status s = insert->BindAll(
      uuid, checkpoint.name(), *parent,
      TimeUtil::TimestampToMicroseconds(checkpoint.create_time()),
      StateName(checkpoint.vm_state()));
  if (s.ok() && *parent == 0) s = insert->BindNull(3);
  if (s.ok()) s = insert->BindBlob(6, checkpoint.config().SerializeAsString());
  if (s.ok()) {
    s = checkpoint.has_saved_state()
            ? insert->BindBlob(7, checkpoint.saved_state().SerializeAsString())
            : insert->BindNull(7);
  }
  if (!s.ok()) return s;
  if (s = insert->Run(); !s.ok()) {
    if (absl::StrContains(s.message(), "UNIQUE")) {
      return absl::AlreadyExistsError(
          absl::StrCat("VM '", before.name(), "' has a checkpoint named '",
                       checkpoint.name(), "' already"));
    }
    return s;
  }
  absl::StatusOr<Statement> id = db_.Prepare("SELECT last_insert_rowid()");
  if (!id.ok()) return id.status();
  absl::StatusOr<bool> row = id->Step();
  if (!row.ok()) return row.status();
  const int64_t new_id = id->ColumnInt64(0);
  for (size_t i = 0; i < frozen.size(); ++i) {
    absl::StatusOr<Statement> disk = db_.Prepare(
        "INSERT INTO vm_checkpoint_disks (checkpoint_id, position, path, "
        "format, owned) VALUES (?, ?, ?, ?, ?)");
    if (!disk.ok()) return disk.status();
    if (s = disk->BindAll(new_id, static_cast<int64_t>(i), frozen[i].path,
                          DiskFormatName(frozen[i].format),
                          int64_t{frozen[i].owned});
        !s.ok()) {
      return s;
    }
    if (s = disk->Run(); !s.ok()) return s;
  }
  if (s = MakeCurrent(db_, uuid, new_id); !s.ok()) return s;
  if (s = ReplaceDisks(db_, uuid, vm_disks); !s.ok()) return s;
  return CommitHardwareChange(
      before,
      absl::StrCat("checkpoint '", checkpoint.name(), "' created (VM ",
                   StateName(checkpoint.vm_state()), ")"),
      std::move(tx));
}

absl::StatusOr<Vm> VmStore::RecordCheckpointApplied(
    const std::string& uuid, int64_t id, const std::string& checkpoint_name,
    const hvstack::v1::VmConfig& config,
    const std::vector<hvstack::v1::Disk>& vm_disks,
    const std::optional<hvstack::v1::SavedStateInfo>& saved) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<CheckedChange> begun =
      BeginChange(uuid, VmRequest::kCheckpoint);
  if (!begun.ok()) return begun.status();
  Transaction& tx = begun->tx;
  const Vm& before = begun->before;
  absl::StatusOr<Statement> hw = db_.Prepare(
      "UPDATE vms SET vcpus = ?, memory_mib = ?, kernel_path = ?, "
      "cmdline = ?, initrd_path = ?, disable_enlightenments = ? "
      "WHERE uuid = ?");
  if (!hw.ok()) return hw.status();
  absl::Status s =
      hw->BindAll(config.vcpus(), config.memory_mib(), config.kernel_path(),
                  config.cmdline(), config.initrd_path(),
                  int64_t{config.disable_enlightenments()}, uuid);
  if (!s.ok()) return s;
  if (s = hw->Run(); !s.ok()) return s;
  if (s = ReplaceDisks(db_, uuid, vm_disks); !s.ok()) return s;
  if (s = MakeCurrent(db_, uuid, id); !s.ok()) return s;
  const std::string reason =
      absl::StrCat("checkpoint '", checkpoint_name, "' applied");
  // The saved state: the checkpoint's, or none.
  absl::StatusOr<Statement> drop =
      db_.Prepare("DELETE FROM vm_saved_states WHERE vm_uuid = ?");
  if (!drop.ok()) return drop.status();
  if (s = drop->Bind(1, uuid); !s.ok()) return s;
  if (s = drop->Run(); !s.ok()) return s;
  if (saved.has_value()) {
    absl::StatusOr<Statement> insert = db_.Prepare(
        "INSERT INTO vm_saved_states (vm_uuid, save_time_us, "
        "saved_from, state_file, memory_file, state_bytes, "
        "memory_pages_written, memory_pages_total, save_duration_us) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!insert.ok()) return insert.status();
    if (s = insert->BindAll(
            uuid, TimeUtil::TimestampToMicroseconds(saved->save_time()),
            StateName(saved->saved_from()), saved->state_file(),
            saved->memory_file(), saved->state_bytes(),
            saved->memory_pages_written(), saved->memory_pages_total(),
            saved->save_duration_us());
        !s.ok()) {
      return s;
    }
    if (s = insert->Run(); !s.ok()) return s;
  }
  const VmState target = saved.has_value() ? hvstack::v1::VM_STATE_SAVED
                                           : hvstack::v1::VM_STATE_OFF;
  std::optional<uint64_t> state_event;
  // A Crashed VM given an Off checkpoint stays Crashed (its crash report
  // and reason are kept until it starts again).
  if (before.state() != target &&
      !(before.state() == hvstack::v1::VM_STATE_CRASHED &&
        target == hvstack::v1::VM_STATE_OFF)) {
    absl::StatusOr<std::pair<Vm, uint64_t>> changed =
        SetStateInTransaction(uuid, target, reason, int64_t{0});
    if (!changed.ok()) return changed.status();
    state_event = changed->second;
  }
  absl::StatusOr<Vm> after =
      CommitHardwareChange(before, reason, std::move(tx));
  if (after.ok() && state_event.has_value()) PublishEvent(*state_event);
  return after;
}

absl::StatusOr<Vm> VmStore::RecordCheckpointDeleted(const std::string& uuid,
                                                    int64_t id,
                                                    const std::string& name) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<CheckedChange> begun =
      BeginChange(uuid, VmRequest::kCheckpoint);
  if (!begun.ok()) return begun.status();
  Transaction& tx = begun->tx;
  const Vm& before = begun->before;
  absl::StatusOr<Statement> parent = db_.Prepare(
      "SELECT COALESCE(parent_id, 0), is_current FROM vm_checkpoints "
      "WHERE id = ? AND vm_uuid = ?");
  if (!parent.ok()) return parent.status();
  if (absl::Status s = parent->BindAll(id, uuid); !s.ok()) return s;
  absl::StatusOr<bool> row = parent->Step();
  if (!row.ok()) return row.status();
  if (!*row) {
    return absl::NotFoundError(absl::StrCat(
        "VM '", before.name(), "' has no checkpoint '", name, "'"));
  }
  const int64_t parent_id = parent->ColumnInt64(0);
  const bool current = parent->ColumnInt64(1) != 0;
  absl::StatusOr<Statement> adopt = db_.Prepare(
      "UPDATE vm_checkpoints SET parent_id = ? WHERE parent_id = ?");
  if (!adopt.ok()) return adopt.status();
  absl::Status s =
      parent_id == 0 ? adopt->BindNull(1) : adopt->Bind(1, parent_id);
  if (s.ok()) s = adopt->Bind(2, id);
  if (!s.ok()) return s;
  if (s = adopt->Run(); !s.ok()) return s;
  if (s = Exec(db_, "DELETE FROM vm_checkpoints WHERE id = ? AND vm_uuid = ?",
               id, uuid);
      !s.ok()) {
    return s;
  }
  if (current) {
    if (s = MakeCurrent(db_, uuid, parent_id); !s.ok()) return s;
  }
  return CommitHardwareChange(
      before, absl::StrCat("checkpoint '", name, "' deleted"), std::move(tx));
}

}  // namespace vmms
