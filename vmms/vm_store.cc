#include "vmms/vm_store.h"

#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "vmms/disk_table.h"
#include "vmms/event_table.h"
#include "vmms/migrations.h"
#include "vmms/nic_rows.h"
#include "vmms/request_peer.h"
#include "vmms/state_machine.h"

namespace vmms {
namespace {

using google::protobuf::util::TimeUtil;

constexpr char kColumns[] =
    "uuid, name, vcpus, memory_mib, kernel_path, cmdline, state, state_reason, "
    "create_time_us, update_time_us, state_change_time_us, worker_pid, "
    "initrd_path, reboot_count, autostart, restart_policy, restart_count, "
    "uid_slot, sandboxed, disable_enlightenments, on_guest_crash, backend, "
    "libvirt_accelerator, libvirt_adopted_domain";

Vm VmFromRow(const Statement& row) {
  Vm vm;
  vm.set_uuid(row.ColumnText(0));
  vm.set_name(row.ColumnText(1));
  vm.mutable_config()->set_vcpus(static_cast<uint32_t>(row.ColumnInt64(2)));
  vm.mutable_config()->set_memory_mib(
      static_cast<uint64_t>(row.ColumnInt64(3)));
  vm.mutable_config()->set_kernel_path(row.ColumnText(4));
  vm.mutable_config()->set_cmdline(row.ColumnText(5));
  vm.set_state(StateFromName(row.ColumnText(6)));
  vm.set_state_reason(row.ColumnText(7));
  *vm.mutable_create_time() =
      TimeUtil::MicrosecondsToTimestamp(row.ColumnInt64(8));
  *vm.mutable_update_time() =
      TimeUtil::MicrosecondsToTimestamp(row.ColumnInt64(9));
  *vm.mutable_state_change_time() =
      TimeUtil::MicrosecondsToTimestamp(row.ColumnInt64(10));
  vm.set_worker_pid(row.ColumnInt64(11));
  vm.mutable_config()->set_initrd_path(row.ColumnText(12));
  vm.set_reboot_count(static_cast<uint32_t>(row.ColumnInt64(13)));
  vm.mutable_config()->set_autostart(row.ColumnInt64(14) != 0);
  vm.mutable_config()->set_restart_policy(
      RestartPolicyFromName(row.ColumnText(15)));
  vm.set_restart_count(static_cast<uint32_t>(row.ColumnInt64(16)));
  // The uid itself is vmms's arithmetic (UidAllocator), filled in by the
  // worker manager; the row keeps the slot.
  vm.mutable_sandbox()->set_enabled(row.ColumnInt64(18) != 0);
  vm.mutable_config()->set_disable_enlightenments(row.ColumnInt64(19) != 0);
  vm.mutable_config()->set_on_guest_crash(
      GuestCrashPolicyFromName(row.ColumnText(20)));
  if (row.ColumnText(21) == "libvirt") {
    vm.mutable_config()->set_backend(hvstack::v1::BACKEND_LIBVIRT);
    vm.mutable_config()->mutable_libvirt()->set_accelerator(
        row.ColumnText(22) == "tcg"
            ? hvstack::v1::LibvirtOptions::ACCELERATOR_TCG
            : hvstack::v1::LibvirtOptions::ACCELERATOR_KVM);
    if (const std::string domain = row.ColumnText(23); !domain.empty()) {
      vm.mutable_libvirt()->set_adopted(true);
      vm.mutable_libvirt()->set_domain_name(domain);
    }
  }
  return vm;
}

absl::Status InsertHistory(Database& db, const std::string& uuid,
                           const char* from, VmState to,
                           const std::string& reason, int64_t now_us) {
  absl::StatusOr<Statement> stmt = db.Prepare(
      "INSERT INTO vm_state_history (vm_uuid, from_state, to_state, reason, "
      "time_us, peer) "
      "VALUES (?, ?, ?, ?, ?, ?)");
  if (!stmt.ok()) return stmt.status();
  absl::Status s = stmt->BindAll(uuid, "", StateName(to), reason, now_us,
                                 CurrentRequestPeer());
  if (!s.ok()) return s;
  // The creation entry has no previous state: store NULL rather than an
  // invented one.
  s = from != nullptr ? stmt->Bind(2, absl::string_view(from))
                      : stmt->BindNull(2);
  if (!s.ok()) return s;
  return stmt->Run();
}

}  // namespace

const char* RestartPolicyName(hvstack::v1::RestartPolicy policy) {
  switch (policy) {
    case hvstack::v1::RESTART_POLICY_ON_FAILURE:
      return "on-failure";
    case hvstack::v1::RESTART_POLICY_ALWAYS:
      return "always";
    default:
      return "never";
  }
}

const char* GuestCrashPolicyName(hvstack::v1::GuestCrashPolicy policy) {
  switch (policy) {
    case hvstack::v1::GUEST_CRASH_POLICY_RESTART:
      return "restart";
    case hvstack::v1::GUEST_CRASH_POLICY_PRESERVE:
      return "preserve";
    default:
      return "stop";
  }
}

hvstack::v1::GuestCrashPolicy GuestCrashPolicyFromName(
    const std::string& name) {
  if (name == "restart") return hvstack::v1::GUEST_CRASH_POLICY_RESTART;
  if (name == "preserve") return hvstack::v1::GUEST_CRASH_POLICY_PRESERVE;
  return hvstack::v1::GUEST_CRASH_POLICY_STOP;
}

hvstack::v1::RestartPolicy RestartPolicyFromName(const std::string& name) {
  if (name == "on-failure") return hvstack::v1::RESTART_POLICY_ON_FAILURE;
  if (name == "always") return hvstack::v1::RESTART_POLICY_ALWAYS;
  if (name == "never") return hvstack::v1::RESTART_POLICY_NEVER;
  return hvstack::v1::RESTART_POLICY_UNSPECIFIED;
}

VmState StateFromName(const std::string& name) {
  if (name == "off") return hvstack::v1::VM_STATE_OFF;
  if (name == "starting") return hvstack::v1::VM_STATE_STARTING;
  if (name == "running") return hvstack::v1::VM_STATE_RUNNING;
  if (name == "stopping") return hvstack::v1::VM_STATE_STOPPING;
  if (name == "crashed") return hvstack::v1::VM_STATE_CRASHED;
  if (name == "paused") return hvstack::v1::VM_STATE_PAUSED;
  if (name == "saving") return hvstack::v1::VM_STATE_SAVING;
  if (name == "restoring") return hvstack::v1::VM_STATE_RESTORING;
  if (name == "saved") return hvstack::v1::VM_STATE_SAVED;
  return hvstack::v1::VM_STATE_UNSPECIFIED;
}

const char* StateName(VmState state) {
  switch (state) {
    case hvstack::v1::VM_STATE_OFF:
      return "off";
    case hvstack::v1::VM_STATE_STARTING:
      return "starting";
    case hvstack::v1::VM_STATE_RUNNING:
      return "running";
    case hvstack::v1::VM_STATE_STOPPING:
      return "stopping";
    case hvstack::v1::VM_STATE_CRASHED:
      return "crashed";
    case hvstack::v1::VM_STATE_PAUSED:
      return "paused";
    case hvstack::v1::VM_STATE_SAVING:
      return "saving";
    case hvstack::v1::VM_STATE_RESTORING:
      return "restoring";
    case hvstack::v1::VM_STATE_SAVED:
      return "saved";
    default:
      return "unspecified";
  }
}

absl::StatusOr<std::unique_ptr<VmStore>> VmStore::Open(const std::string& path,
                                                       VmStoreOptions options) {
  if (options.event_retention < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("event retention ", options.event_retention,
                     " is too small: keep at least 1 event"));
  }
  absl::StatusOr<Database> db = Database::Open(path);
  if (!db.ok()) return db.status();
  absl::StatusOr<int> version = ApplyMigrations(*db, SchemaMigrations());
  if (!version.ok()) return version.status();
  absl::StatusOr<uint64_t> last = LastEventSequence(*db);
  if (!last.ok()) return last.status();
  return std::unique_ptr<VmStore>(new VmStore(*std::move(db), options, *last));
}

absl::StatusOr<uint64_t> VmStore::AddEvent(
    const Vm& vm, hvstack::v1::VmEvent::Kind kind, VmState previous,
    const std::string& reason, int64_t time_us,
    const hvstack::v1::GuestCrash* crash) {
  hvstack::v1::VmEvent event;
  *event.mutable_time() = TimeUtil::MicrosecondsToTimestamp(time_us);
  event.set_vm_uuid(vm.uuid());
  event.set_vm_name(vm.name());
  event.set_kind(kind);
  event.set_state(vm.state());
  event.set_previous_state(previous);
  event.set_reason(reason);
  event.set_peer(CurrentRequestPeer());
  if (crash != nullptr) *event.mutable_guest_crash() = *crash;
  return InsertEvent(db_, event, options_.event_retention);
}

void VmStore::PublishEvent(uint64_t sequence) {
  absl::MutexLock lock(&events_mu_);
  if (sequence > last_event_) last_event_ = sequence;
}

absl::StatusOr<std::vector<hvstack::v1::VmEvent>> VmStore::ReadEvents(
    uint64_t after_sequence, int limit) {
  absl::MutexLock lock(&mu_);
  return ReadEventsAfter(db_, after_sequence, limit);
}

bool VmStore::AwaitEventAfter(uint64_t after_sequence, absl::Duration timeout) {
  struct Waiter {
    VmStore* store;
    uint64_t after;
    static bool Ready(Waiter* w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return w->store->closing_ || w->store->last_event_ > w->after;
    }
  } waiter{this, after_sequence};
  absl::MutexLock lock(&events_mu_);
  events_mu_.AwaitWithTimeout(absl::Condition(&Waiter::Ready, &waiter),
                              timeout);
  return !closing_ && last_event_ > after_sequence;
}

bool VmStore::EventWatchersClosed() {
  absl::MutexLock lock(&events_mu_);
  return closing_;
}

void VmStore::CloseEventWatchers() {
  absl::MutexLock lock(&events_mu_);
  closing_ = true;
}

absl::StatusOr<Vm> VmStore::Create(const Vm& vm, const std::string& reason) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Transaction> tx = Transaction::Begin(db_);
  if (!tx.ok()) return tx.status();
  if (GetWhere("name", vm.name()).ok()) {
    return absl::AlreadyExistsError(
        absl::StrCat("VM '", vm.name(), "' already exists"));
  }
  int64_t now = absl::ToUnixMicros(absl::Now());
  absl::StatusOr<Statement> stmt = db_.Prepare(absl::StrCat(
      "INSERT INTO vms (", kColumns,
      ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, 0, ?, ?, 0, NULL, 1, "
      "?, ?, ?, ?, ?)"));
  if (!stmt.ok()) return stmt.status();
  absl::Status s = stmt->BindAll(
      vm.uuid(), vm.name(), vm.config().vcpus(), vm.config().memory_mib(),
      vm.config().kernel_path(), vm.config().cmdline(),
      StateName(hvstack::v1::VM_STATE_OFF), reason, now, now, now,
      vm.config().initrd_path(), int64_t{vm.config().autostart()},
      RestartPolicyName(vm.config().restart_policy()),
      int64_t{vm.config().disable_enlightenments()},
      GuestCrashPolicyName(vm.config().on_guest_crash()),
      vm.config().backend() == hvstack::v1::BACKEND_LIBVIRT ? "libvirt"
                                                            : "hvstack",
      vm.config().libvirt().accelerator() ==
              hvstack::v1::LibvirtOptions::ACCELERATOR_TCG
          ? "tcg"
          : "kvm",
      vm.libvirt().adopted() ? vm.libvirt().domain_name() : std::string());
  if (!s.ok()) return s;
  if (s = stmt->Run(); !s.ok()) {
    if (absl::IsFailedPrecondition(s)) {
      // A constraint the pre-check did not catch: a uuid collision or a
      // concurrent writer.
      return absl::AlreadyExistsError(absl::StrCat(
          "VM '", vm.name(), "' (uuid ", vm.uuid(), ") already exists"));
    }
    return s;
  }
  if (s = InsertHistory(db_, vm.uuid(), nullptr, hvstack::v1::VM_STATE_OFF,
                        reason, now);
      !s.ok()) {
    return s;
  }
  // Addresses were assigned by the caller (AssignDiskAddress).
  for (const hvstack::v1::Disk& disk : vm.config().disks()) {
    if (s = AppendDisk(db_, vm.uuid(), disk); !s.ok()) return s;
  }
  // Adapters without a MAC get a generated one here, unique in this
  // transaction.
  hvstack::v1::VmConfig with_macs = vm.config();
  if (s = InsertNicRows(db_, vm.uuid(), with_macs); !s.ok()) return s;
  absl::StatusOr<Vm> created = GetWhere("uuid", vm.uuid());
  if (!created.ok()) return created.status();
  absl::StatusOr<uint64_t> sequence =
      AddEvent(*created, hvstack::v1::VmEvent::KIND_CREATED,
               hvstack::v1::VM_STATE_UNSPECIFIED, reason, now);
  if (!sequence.ok()) return sequence.status();
  if (s = tx->Commit(); !s.ok()) return s;
  PublishEvent(*sequence);
  return created;
}

absl::StatusOr<Vm> VmStore::GetWhere(const char* column,
                                     const std::string& value) {
  absl::StatusOr<Statement> stmt = db_.Prepare(
      absl::StrCat("SELECT ", kColumns, " FROM vms WHERE ", column, " = ?"));
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->Bind(1, value); !s.ok()) return s;
  absl::StatusOr<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) {
    return absl::NotFoundError(
        std::string(column) == "name"
            ? absl::StrCat("VM '", value, "' not found")
            : absl::StrCat("VM with uuid ", value, " not found"));
  }
  Vm vm = VmFromRow(*stmt);
  absl::StatusOr<std::vector<hvstack::v1::Disk>> disks =
      ReadDisks(db_, vm.uuid());
  if (!disks.ok()) return disks.status();
  for (hvstack::v1::Disk& disk : *disks)
    *vm.mutable_config()->add_disks() = std::move(disk);
  if (absl::Status s = LoadNicRows(db_, vm); !s.ok()) return s;
  if (absl::Status s = FillSavedState(vm); !s.ok()) return s;
  return vm;
}

absl::StatusOr<Vm> VmStore::Get(const std::string& name) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Vm> vm = GetWhere("name", name);
  if (!vm.ok()) return vm.status();
  if (absl::Status s = FillLastGuestCrash(*vm); !s.ok()) return s;
  return vm;
}

absl::StatusOr<Vm> VmStore::GetByUuid(const std::string& uuid) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Vm> vm = GetWhere("uuid", uuid);
  if (!vm.ok()) return vm.status();
  if (absl::Status s = FillLastGuestCrash(*vm); !s.ok()) return s;
  return vm;
}

absl::StatusOr<std::vector<Vm>> VmStore::List() {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> stmt =
      db_.Prepare(absl::StrCat("SELECT ", kColumns, " FROM vms ORDER BY name"));
  if (!stmt.ok()) return stmt.status();
  absl::StatusOr<std::map<std::string, std::vector<hvstack::v1::Disk>>> disks =
      ReadAllDisks(db_);
  if (!disks.ok()) return disks.status();
  std::vector<Vm> vms;
  while (true) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    vms.push_back(VmFromRow(*stmt));
    if (auto it = disks->find(vms.back().uuid()); it != disks->end()) {
      for (hvstack::v1::Disk& disk : it->second)
        *vms.back().mutable_config()->add_disks() = std::move(disk);
    }
  }
  if (absl::Status s = LoadNicRows(db_, vms); !s.ok()) return s;
  return vms;
}

absl::StatusOr<Vm> VmStore::SetState(const std::string& uuid, VmState state,
                                     const std::string& reason,
                                     std::optional<int64_t> worker_pid) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Transaction> tx = Transaction::Begin(db_);
  if (!tx.ok()) return tx.status();
  absl::StatusOr<std::pair<Vm, uint64_t>> changed =
      SetStateInTransaction(uuid, state, reason, worker_pid);
  if (!changed.ok()) return changed.status();
  if (absl::Status s = tx->Commit(); !s.ok()) return s;
  PublishEvent(changed->second);
  return changed->first;
}

absl::StatusOr<std::pair<Vm, uint64_t>> VmStore::SetStateInTransaction(
    const std::string& uuid, VmState state, const std::string& reason,
    std::optional<int64_t> worker_pid) {
  absl::StatusOr<Vm> before = GetWhere("uuid", uuid);
  if (!before.ok()) return before.status();
  if (!IsAllowedTransition(before->state(), state)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "VM '", before->name(), "' is ", StateName(before->state()),
        "; it cannot become ", StateName(state), " (", reason, ")"));
  }
  int64_t now = absl::ToUnixMicros(absl::Now());
  // The reboot counter counts since the VM was last started.
  absl::StatusOr<Statement> stmt = db_.Prepare(
      "UPDATE vms SET state = ?, state_reason = ?, update_time_us = ?, "
      "state_change_time_us = ?, worker_pid = ?, "
      "reboot_count = CASE WHEN ? THEN 0 ELSE reboot_count END "
      "WHERE uuid = ?");
  if (!stmt.ok()) return stmt.status();
  absl::Status s =
      stmt->BindAll(StateName(state), reason, now, now,
                    worker_pid.value_or(before->worker_pid()),
                    int64_t{state == hvstack::v1::VM_STATE_STARTING}, uuid);
  if (!s.ok()) return s;
  if (s = stmt->Run(); !s.ok()) return s;
  if (s = InsertHistory(db_, uuid, StateName(before->state()), state, reason,
                        now);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<Vm> after = GetWhere("uuid", uuid);
  if (!after.ok()) return after.status();
  absl::StatusOr<uint64_t> sequence =
      AddEvent(*after, hvstack::v1::VmEvent::KIND_STATE_CHANGED,
               before->state(), reason, now);
  if (!sequence.ok()) return sequence.status();
  return std::make_pair(*std::move(after), *sequence);
}

absl::Status VmStore::RecordGuestEvent(const std::string& uuid,
                                       hvstack::v1::VmEvent::Kind kind,
                                       const std::string& reason) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Transaction> tx = Transaction::Begin(db_);
  if (!tx.ok()) return tx.status();
  absl::StatusOr<Vm> vm = GetWhere("uuid", uuid);
  if (!vm.ok()) return vm.status();
  absl::StatusOr<uint64_t> sequence =
      AddEvent(*vm, kind, vm->state(), reason, absl::ToUnixMicros(absl::Now()));
  if (!sequence.ok()) return sequence.status();
  if (absl::Status s = tx->Commit(); !s.ok()) return s;
  PublishEvent(*sequence);
  return absl::OkStatus();
}

absl::StatusOr<Vm> VmStore::RecordReboot(const std::string& uuid,
                                         const std::string& reason) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Transaction> tx = Transaction::Begin(db_);
  if (!tx.ok()) return tx.status();
  absl::StatusOr<Vm> before = GetWhere("uuid", uuid);
  if (!before.ok()) return before.status();
  if (before->state() != hvstack::v1::VM_STATE_RUNNING) {
    return absl::FailedPreconditionError(
        absl::StrCat("VM '", before->name(), "' is ",
                     StateName(before->state()), "; a reboot needs Running"));
  }
  int64_t now = absl::ToUnixMicros(absl::Now());
  absl::StatusOr<Statement> stmt = db_.Prepare(
      "UPDATE vms SET reboot_count = reboot_count + 1, state_reason = ?, "
      "update_time_us = ? WHERE uuid = ?");
  if (!stmt.ok()) return stmt.status();
  absl::Status s = stmt->BindAll(reason, now, uuid);
  if (!s.ok()) return s;
  if (s = stmt->Run(); !s.ok()) return s;
  if (s = InsertHistory(db_, uuid, StateName(before->state()), before->state(),
                        reason, now);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<Vm> after = GetWhere("uuid", uuid);
  if (!after.ok()) return after.status();
  absl::StatusOr<uint64_t> sequence =
      AddEvent(*after, hvstack::v1::VmEvent::KIND_REBOOTED, before->state(),
               reason, now);
  if (!sequence.ok()) return sequence.status();
  if (s = tx->Commit(); !s.ok()) return s;
  PublishEvent(*sequence);
  return after;
}

absl::StatusOr<uint32_t> VmStore::AssignUidSlot(
    const std::string& uuid, const std::function<bool(uint32_t)>& usable,
    uint32_t slot_count) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Transaction> tx = Transaction::Begin(db_);
  if (!tx.ok()) return tx.status();
  absl::StatusOr<Statement> current =
      db_.Prepare("SELECT uid_slot IS NULL, uid_slot FROM vms WHERE uuid = ?");
  if (!current.ok()) return current.status();
  if (absl::Status s = current->Bind(1, uuid); !s.ok()) return s;
  absl::StatusOr<bool> row = current->Step();
  if (!row.ok()) return row.status();
  if (!*row) {
    return absl::NotFoundError(
        absl::StrCat("VM with uuid ", uuid, " not found"));
  }
  if (current->ColumnInt64(0) == 0)
    return static_cast<uint32_t>(current->ColumnInt64(1));
  absl::StatusOr<Statement> taken = db_.Prepare(
      "SELECT uid_slot FROM vms WHERE uid_slot IS NOT NULL ORDER BY uid_slot");
  if (!taken.ok()) return taken.status();
  std::vector<uint32_t> used;
  while (true) {
    absl::StatusOr<bool> more = taken->Step();
    if (!more.ok()) return more.status();
    if (!*more) break;
    used.push_back(static_cast<uint32_t>(taken->ColumnInt64(0)));
  }
  // The lowest slot nobody holds whose id is not a real account.
  size_t next_used = 0;
  for (uint32_t slot = 0; slot < slot_count; ++slot) {
    while (next_used < used.size() && used[next_used] < slot) ++next_used;
    if (next_used < used.size() && used[next_used] == slot) continue;
    if (!usable(slot)) continue;
    absl::StatusOr<Statement> update =
        db_.Prepare("UPDATE vms SET uid_slot = ? WHERE uuid = ?");
    if (!update.ok()) return update.status();
    if (absl::Status s = update->BindAll(int64_t{slot}, uuid); !s.ok())
      return s;
    if (absl::Status s = update->Run(); !s.ok()) return s;
    if (absl::Status s = tx->Commit(); !s.ok()) return s;
    return slot;
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("no free sandbox uid slot (all ", slot_count,
                   " are in use); delete VMs or widen vmms's uid range"));
}

absl::StatusOr<uint32_t> VmStore::UidSlot(const std::string& uuid) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> stmt = db_.Prepare(
      "SELECT uid_slot FROM vms WHERE uuid = ? AND uid_slot IS "
      "NOT NULL");
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->Bind(1, uuid); !s.ok()) return s;
  absl::StatusOr<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) {
    return absl::NotFoundError(
        absl::StrCat("VM with uuid ", uuid, " has no uid slot"));
  }
  return static_cast<uint32_t>(stmt->ColumnInt64(0));
}

absl::Status VmStore::SetSandboxed(const std::string& uuid, bool sandboxed) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> stmt =
      db_.Prepare("UPDATE vms SET sandboxed = ? WHERE uuid = ?");
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->BindAll(int64_t{sandboxed}, uuid); !s.ok())
    return s;
  return stmt->Run();
}

absl::Status VmStore::SetWorkerPid(const std::string& uuid, int64_t worker_pid,
                                   int64_t start_ticks) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> stmt = db_.Prepare(
      "UPDATE vms SET worker_pid = ?, worker_start_ticks = ?, "
      "update_time_us = ? WHERE uuid = ?");
  if (!stmt.ok()) return stmt.status();
  absl::Status s = stmt->BindAll(worker_pid, start_ticks,
                                 absl::ToUnixMicros(absl::Now()), uuid);
  if (!s.ok()) return s;
  return stmt->Run();
}

absl::StatusOr<int64_t> VmStore::WorkerStartTicks(const std::string& uuid) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> stmt =
      db_.Prepare("SELECT worker_start_ticks FROM vms WHERE uuid = ?");
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->Bind(1, uuid); !s.ok()) return s;
  absl::StatusOr<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) {
    return absl::NotFoundError(
        absl::StrCat("VM with uuid ", uuid, " not found"));
  }
  return stmt->ColumnInt64(0);
}

absl::StatusOr<Vm> VmStore::Update(const std::string& uuid,
                                   const hvstack::v1::VmConfig& config,
                                   const std::vector<std::string>& paths) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Transaction> tx = Transaction::Begin(db_);
  if (!tx.ok()) return tx.status();
  absl::StatusOr<Vm> before = GetWhere("uuid", uuid);
  if (!before.ok()) return before.status();
  std::vector<std::string> changed;
  for (const std::string& path : paths) {
    std::string column = path;
    absl::Status s;
    absl::StatusOr<Statement> stmt = db_.Prepare(
        absl::StrCat("UPDATE vms SET ", column, " = ? WHERE uuid = ?"));
    if (path == "autostart") {
      if (!stmt.ok()) return stmt.status();
      s = stmt->BindAll(int64_t{config.autostart()}, uuid);
    } else if (path == "restart_policy") {
      if (!stmt.ok()) return stmt.status();
      s = stmt->BindAll(RestartPolicyName(config.restart_policy()), uuid);
    } else if (path == "on_guest_crash") {
      if (!stmt.ok()) return stmt.status();
      s = stmt->BindAll(GuestCrashPolicyName(config.on_guest_crash()), uuid);
    } else {
      if (absl::Status allowed =
              CheckRequest(*before, VmRequest::kUpdateHardware);
          !allowed.ok()) {
        return allowed;
      }
      if (path == "vcpus") {
        if (!stmt.ok()) return stmt.status();
        s = stmt->BindAll(config.vcpus(), uuid);
      } else if (path == "memory_mib") {
        if (!stmt.ok()) return stmt.status();
        s = stmt->BindAll(config.memory_mib(), uuid);
      } else if (path == "disable_enlightenments") {
        if (!stmt.ok()) return stmt.status();
        s = stmt->BindAll(int64_t{config.disable_enlightenments()}, uuid);
      } else if (path == "kernel_path" || path == "cmdline" ||
                 path == "initrd_path") {
        if (!stmt.ok()) return stmt.status();
        const std::string& value =
            path == "kernel_path"
                ? config.kernel_path()
                : (path == "cmdline" ? config.cmdline() : config.initrd_path());
        s = stmt->BindAll(value, uuid);
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("update_mask: unknown field '", path, "'"));
      }
    }
    if (!s.ok()) return s;
    if (s = stmt->Run(); !s.ok()) return s;
    changed.push_back(path);
  }
  int64_t now = absl::ToUnixMicros(absl::Now());
  absl::StatusOr<Statement> touch =
      db_.Prepare("UPDATE vms SET update_time_us = ? WHERE uuid = ?");
  if (!touch.ok()) return touch.status();
  if (absl::Status s = touch->BindAll(now, uuid); !s.ok()) return s;
  if (absl::Status s = touch->Run(); !s.ok()) return s;
  absl::StatusOr<Vm> after = GetWhere("uuid", uuid);
  if (!after.ok()) return after.status();
  std::string reason = "updated:";
  for (const std::string& path : changed) absl::StrAppend(&reason, " ", path);
  absl::StatusOr<uint64_t> sequence = AddEvent(
      *after, hvstack::v1::VmEvent::KIND_UPDATED, before->state(), reason, now);
  if (!sequence.ok()) return sequence.status();
  if (absl::Status s = tx->Commit(); !s.ok()) return s;
  PublishEvent(*sequence);
  return after;
}

namespace {

std::string DiskDescription(const hvstack::v1::Disk& disk) {
  return absl::StrCat(ScsiAddressText(disk.address()), " ", disk.path(), " (",
                      DiskFormatName(disk.format()),
                      disk.read_only() ? ", read-only" : "", ")");
}

}  // namespace

absl::StatusOr<Vm> VmStore::AttachDisk(const std::string& uuid,
                                       const hvstack::v1::Disk& disk) {
  return ChangeHardware(
      uuid, [&disk](Database& db, const Vm& vm) -> absl::StatusOr<std::string> {
        std::vector<hvstack::v1::Disk> existing(vm.config().disks().begin(),
                                                vm.config().disks().end());
        hvstack::v1::Disk placed = disk;
        if (absl::Status s = AssignDiskAddress(existing, "disk", &placed);
            !s.ok())
          return s;
        if (absl::Status s = AppendDisk(db, vm.uuid(), placed); !s.ok())
          return s;
        return absl::StrCat("disk attached: ", DiskDescription(placed));
      });
}

absl::StatusOr<Vm> VmStore::DetachDisk(
    const std::string& uuid, const std::string& path,
    const hvstack::v1::ScsiAddress& address) {
  return ChangeHardware(
      uuid, [&](Database& db, const Vm& vm) -> absl::StatusOr<std::string> {
        absl::StatusOr<hvstack::v1::Disk> removed =
            DeleteDisk(db, vm.uuid(), path, address);
        if (!removed.ok()) {
          return absl::Status(removed.status().code(),
                              absl::StrCat("VM '", vm.name(),
                                           "': ", removed.status().message()));
        }
        return absl::StrCat("disk detached: ", DiskDescription(*removed));
      });
}

absl::StatusOr<VmStore::CheckedChange> VmStore::BeginChange(
    const std::string& uuid, VmRequest request) {
  absl::StatusOr<Transaction> tx = Transaction::Begin(db_);
  if (!tx.ok()) return tx.status();
  absl::StatusOr<Vm> before = GetWhere("uuid", uuid);
  if (!before.ok()) return before.status();
  if (absl::Status s = CheckRequest(*before, request); !s.ok()) return s;
  return CheckedChange{*std::move(tx), *std::move(before)};
}

absl::StatusOr<Vm> VmStore::CommitHardwareChange(const Vm& before,
                                                 const std::string& reason,
                                                 Transaction tx) {
  int64_t now = absl::ToUnixMicros(absl::Now());
  absl::StatusOr<Statement> touch =
      db_.Prepare("UPDATE vms SET update_time_us = ? WHERE uuid = ?");
  if (!touch.ok()) return touch.status();
  if (absl::Status s = touch->BindAll(now, before.uuid()); !s.ok()) return s;
  if (absl::Status s = touch->Run(); !s.ok()) return s;
  absl::StatusOr<Vm> after = GetWhere("uuid", before.uuid());
  if (!after.ok()) return after.status();
  absl::StatusOr<uint64_t> sequence = AddEvent(
      *after, hvstack::v1::VmEvent::KIND_UPDATED, before.state(), reason, now);
  if (!sequence.ok()) return sequence.status();
  if (absl::Status s = tx.Commit(); !s.ok()) return s;
  PublishEvent(*sequence);
  return after;
}

absl::StatusOr<Vm> VmStore::ChangeHardware(
    const std::string& uuid,
    const std::function<absl::StatusOr<std::string>(Database&, const Vm&)>&
        change) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<CheckedChange> begun =
      BeginChange(uuid, VmRequest::kUpdateHardware);
  if (!begun.ok()) return begun.status();
  absl::StatusOr<std::string> what = change(db_, begun->before);
  if (!what.ok()) return what.status();
  return CommitHardwareChange(begun->before, *what, std::move(begun->tx));
}

absl::StatusOr<Vm> VmStore::AddNic(const std::string& uuid,
                                   const hvstack::v1::NicConfig& nic) {
  return ChangeHardware(
      uuid, [&nic](Database& db, const Vm& vm) -> absl::StatusOr<std::string> {
        absl::StatusOr<hvstack::v1::NicConfig> added =
            InsertNicRow(db, vm, nic);
        if (!added.ok()) return added.status();
        return absl::StrCat(
            "nic added: ", added->index(), " ", added->mac(),
            added->bridge().empty()
                ? " (unattached)"
                : absl::StrCat(" (bridge ", added->bridge(), ")"));
      });
}

absl::StatusOr<Vm> VmStore::RemoveNic(const std::string& uuid,
                                      const std::string& mac) {
  return ChangeHardware(
      uuid, [&mac](Database& db, const Vm& vm) -> absl::StatusOr<std::string> {
        absl::StatusOr<hvstack::v1::NicConfig> removed =
            DeleteNicRow(db, vm, mac);
        if (!removed.ok()) return removed.status();
        return absl::StrCat("nic removed: ", removed->index(), " ",
                            removed->mac());
      });
}

absl::Status VmStore::SetRestartCount(const std::string& uuid, uint32_t count) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> stmt =
      db_.Prepare("UPDATE vms SET restart_count = ? WHERE uuid = ?");
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->BindAll(count, uuid); !s.ok()) return s;
  return stmt->Run();
}

absl::Status VmStore::Delete(const std::string& uuid,
                             const std::string& reason) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Transaction> tx = Transaction::Begin(db_);
  if (!tx.ok()) return tx.status();
  absl::StatusOr<Vm> before = GetWhere("uuid", uuid);
  if (!before.ok()) return before.status();
  absl::StatusOr<Statement> stmt =
      db_.Prepare("DELETE FROM vms WHERE uuid = ?");
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->Bind(1, uuid); !s.ok()) return s;
  if (absl::Status s = stmt->Run(); !s.ok()) return s;
  if (db_.Changes() == 0) {
    return absl::NotFoundError(
        absl::StrCat("VM with uuid ", uuid, " not found"));
  }
  absl::StatusOr<uint64_t> sequence =
      AddEvent(*before, hvstack::v1::VmEvent::KIND_DELETED, before->state(),
               reason, absl::ToUnixMicros(absl::Now()));
  if (!sequence.ok()) return sequence.status();
  if (absl::Status s = tx->Commit(); !s.ok()) return s;
  PublishEvent(*sequence);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<StateChange>> VmStore::History(
    const std::string& uuid) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> stmt = db_.Prepare(
      "SELECT COALESCE(from_state, ''), to_state, reason, time_us, peer FROM "
      "vm_state_history "
      "WHERE vm_uuid = ? ORDER BY id");
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->Bind(1, uuid); !s.ok()) return s;
  std::vector<StateChange> history;
  while (true) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    history.push_back({StateFromName(stmt->ColumnText(0)),
                       StateFromName(stmt->ColumnText(1)), stmt->ColumnText(2),
                       absl::FromUnixMicros(stmt->ColumnInt64(3)),
                       stmt->ColumnText(4)});
  }
  return history;
}

}  // namespace vmms
