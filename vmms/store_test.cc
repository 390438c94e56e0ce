#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "vmms/migrations.h"
#include "vmms/request_peer.h"
#include "vmms/sqlite_db.h"
#include "vmms/test_dir.h"
#include "vmms/vm_store.h"

namespace vmms {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

int64_t CountRows(Database& db, const std::string& table) {
  auto stmt = db.Prepare("SELECT COUNT(*) FROM " + table);
  EXPECT_TRUE(stmt.ok());
  EXPECT_TRUE(*stmt->Step());
  return stmt->ColumnInt64(0);
}

bool TableExists(Database& db, const std::string& table) {
  auto stmt = db.Prepare(
      "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?");
  EXPECT_TRUE(stmt->Bind(1, table).ok());
  return *stmt->Step();
}

TEST(DatabaseTest, OpensInWalModeWithForeignKeys) {
  testing::TestDir dir;
  auto db = Database::Open(dir.path() + "/t.db");
  ASSERT_TRUE(db.ok()) << db.status();
  auto mode = db->Prepare("PRAGMA journal_mode");
  ASSERT_TRUE(*mode->Step());
  EXPECT_EQ(mode->ColumnText(0), "wal");
  auto fk = db->Prepare("PRAGMA foreign_keys");
  ASSERT_TRUE(*fk->Step());
  EXPECT_EQ(fk->ColumnInt64(0), 1);
}

TEST(DatabaseTest, TransactionRollsBackUnlessCommitted) {
  testing::TestDir dir;
  auto db = Database::Open(dir.path() + "/t.db");
  ASSERT_TRUE(db->Exec("CREATE TABLE t (x INTEGER)").ok());
  {
    auto tx = Transaction::Begin(*db);
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(db->Exec("INSERT INTO t VALUES (1)").ok());
  }  // Destroyed without Commit.
  EXPECT_EQ(CountRows(*db, "t"), 0);
  {
    auto tx = Transaction::Begin(*db);
    ASSERT_TRUE(db->Exec("INSERT INTO t VALUES (2)").ok());
    ASSERT_TRUE(tx->Commit().ok());
  }
  EXPECT_EQ(CountRows(*db, "t"), 1);
}

TEST(DatabaseTest, ErrorsNameTheStatement) {
  testing::TestDir dir;
  auto db = Database::Open(dir.path() + "/t.db");
  auto stmt = db->Prepare("SELECT * FROM no_such_table");
  EXPECT_FALSE(stmt.ok());
  EXPECT_THAT(stmt.status().message(), HasSubstr("no_such_table"));
}

TEST(MigrationsTest, FreshDatabaseReachesLatestVersionAndReapplyIsANoOp) {
  testing::TestDir dir;
  auto db = Database::Open(dir.path() + "/t.db");
  auto version = ApplyMigrations(*db, SchemaMigrations());
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(*version, SchemaMigrations().back().version);
  EXPECT_TRUE(TableExists(*db, "vms"));
  EXPECT_TRUE(TableExists(*db, "vm_state_history"));
  version = ApplyMigrations(*db, SchemaMigrations());
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(CountRows(*db, "schema_version"),
            static_cast<int64_t>(SchemaMigrations().size()));
}

TEST(MigrationsTest, FailingMigrationLeavesTheDatabaseAtTheLastWholeVersion) {
  testing::TestDir dir;
  auto db = Database::Open(dir.path() + "/t.db");
  const Migration migrations[] = {
      {1, "one", "CREATE TABLE a (x INTEGER);"},
      {2, "two, broken half way",
       "CREATE TABLE b (x INTEGER); THIS IS NOT SQL;"},
  };
  auto version = ApplyMigrations(*db, migrations);
  EXPECT_FALSE(version.ok());
  EXPECT_THAT(version.status().message(), HasSubstr("schema migration 2"));
  EXPECT_EQ(*SchemaVersion(*db), 1);
  EXPECT_TRUE(TableExists(*db, "a"));
  EXPECT_FALSE(TableExists(*db, "b"));  // Rolled back with its version row.
}

TEST(MigrationsTest, RefusesADatabaseFromANewerVmms) {
  testing::TestDir dir;
  auto db = Database::Open(dir.path() + "/t.db");
  const Migration two[] = {{1, "one", "CREATE TABLE a (x INTEGER);"},
                           {2, "two", "CREATE TABLE b (x INTEGER);"}};
  ASSERT_TRUE(ApplyMigrations(*db, two).ok());
  auto version = ApplyMigrations(*db, std::span<const Migration>(two, 1));
  EXPECT_EQ(version.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(version.status().message(), HasSubstr("newer"));
}

Vm NewVm(const std::string& name, const std::string& uuid) {
  Vm vm;
  vm.set_name(name);
  vm.set_uuid(uuid);
  vm.mutable_config()->set_vcpus(2);
  vm.mutable_config()->set_memory_mib(128);
  vm.mutable_config()->set_kernel_path("/boot/k");
  vm.mutable_config()->set_cmdline("console=ttyS0");
  return vm;
}

TEST(VmStoreTest, UidSlotsAreLowestFreeUsableStableAndFreedWithTheVm) {
  testing::TestDir dir;
  auto store = VmStore::Open(dir.path() + "/vmms.db");
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Create(NewVm("a", "ua")).ok());
  ASSERT_TRUE((*store)->Create(NewVm("b", "ub")).ok());
  ASSERT_TRUE((*store)->Create(NewVm("c", "uc")).ok());
  EXPECT_EQ((*store)->UidSlot("ua").status().code(),
            absl::StatusCode::kNotFound);
  // Slot 1 is a real account's id: skipped.
  auto usable = [](uint32_t slot) { return slot != 1; };
  EXPECT_EQ(*(*store)->AssignUidSlot("ua", usable, 4), 0u);
  EXPECT_EQ(*(*store)->AssignUidSlot("ub", usable, 4), 2u);
  EXPECT_EQ(*(*store)->AssignUidSlot("ua", usable, 4), 0u);  // Kept.
  EXPECT_EQ(*(*store)->UidSlot("ub"), 2u);
  EXPECT_EQ(*(*store)->AssignUidSlot("uc", usable, 4), 3u);
  ASSERT_TRUE((*store)->Create(NewVm("d", "ud")).ok());
  auto none = (*store)->AssignUidSlot("ud", usable, 4);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(none.status().message(), HasSubstr("no free sandbox uid slot"));
  ASSERT_TRUE((*store)->Delete("ua").ok());
  EXPECT_EQ(*(*store)->AssignUidSlot("ud", usable, 4), 0u);  // Freed.
  // The sandbox flag is per row, on by default.
  EXPECT_TRUE((*store)->GetByUuid("ud")->sandbox().enabled());
  ASSERT_TRUE((*store)->SetSandboxed("ud", false).ok());
  EXPECT_FALSE((*store)->GetByUuid("ud")->sandbox().enabled());
}

TEST(VmStoreTest, GuestHeartbeatEventKeepsTheStateAndSequencesSurviveV9) {
  testing::TestDir dir;
  const std::string path = dir.path() + "/vmms.db";
  {
    // A v8 database whose event log was emptied by retention after
    // sequence 41: v9 rebuilds the table and must not reuse 1..41.
    auto db = Database::Open(path);
    ASSERT_TRUE(db.ok());
    std::span<const Migration> all = SchemaMigrations();
    ASSERT_GE(all.size(), 9u);
    ASSERT_EQ(all[7].version, 8);
    ASSERT_TRUE(ApplyMigrations(*db, all.subspan(0, 8)).ok());
    ASSERT_TRUE(db->Exec("INSERT INTO events (sequence, time_us, vm_uuid, "
                         "vm_name, kind, state) VALUES (41, 0, 'x', 'x', "
                         "'created', 'off'); DELETE FROM events;")
                    .ok());
  }
  auto store = VmStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Create(NewVm("web1", "u1")).ok());
  ASSERT_TRUE((*store)
                  ->RecordGuestEvent("u1",
                                     hvstack::v1::VmEvent::KIND_GUEST_HEARTBEAT,
                                     "heartbeat OK (seq 3)")
                  .ok());
  auto events = (*store)->ReadEvents(0, 10);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].sequence(), 42u);
  EXPECT_EQ((*events)[1].kind(), hvstack::v1::VmEvent::KIND_GUEST_HEARTBEAT);
  EXPECT_EQ((*events)[1].state(), hvstack::v1::VM_STATE_OFF);
  EXPECT_EQ((*events)[1].reason(), "heartbeat OK (seq 3)");
  EXPECT_EQ((*store)
                ->RecordGuestEvent(
                    "nope", hvstack::v1::VmEvent::KIND_GUEST_HEARTBEAT, "x")
                .code(),
            absl::StatusCode::kNotFound);
}

hvstack::v1::GuestCrash Crash(int64_t time_us, uint32_t vp,
                              const std::string& summary) {
  hvstack::v1::GuestCrash crash;
  crash.mutable_time()->set_seconds(time_us / 1000000);
  crash.mutable_time()->set_nanos((time_us % 1000000) * 1000);
  crash.set_vp(vp);
  for (uint64_t p : {0, 0, 0, 0x1000, 77}) crash.add_parameters(p);
  crash.set_summary(summary);
  crash.set_message("[ 1.0] " + summary + "\n");
  return crash;
}

TEST(VmStoreTest, GuestCrashIsRecordedOnceWithItsEventAndState) {
  testing::TestDir dir;
  auto store = VmStore::Open(dir.path() + "/vmms.db");
  ASSERT_TRUE(store.ok()) << store.status();
  Vm vm = NewVm("web1", "u1");
  vm.mutable_config()->set_on_guest_crash(
      hvstack::v1::GUEST_CRASH_POLICY_PRESERVE);
  ASSERT_TRUE((*store)->Create(vm).ok());
  EXPECT_EQ((*store)->Get("web1")->config().on_guest_crash(),
            hvstack::v1::GUEST_CRASH_POLICY_PRESERVE);
  EXPECT_FALSE((*store)->Get("web1")->has_last_guest_crash());
  ASSERT_TRUE(
      (*store)->SetState("u1", hvstack::v1::VM_STATE_STARTING, "start").ok());
  ASSERT_TRUE(
      (*store)->SetState("u1", hvstack::v1::VM_STATE_RUNNING, "ready").ok());

  const hvstack::v1::GuestCrash first = Crash(1000001, 0, "Kernel panic - x");
  auto recorded =
      (*store)->RecordGuestCrash("u1", first, hvstack::v1::VM_STATE_PAUSED,
                                 "guest crashed: Kernel panic - x");
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  EXPECT_TRUE(*recorded);
  // The same report again (a replayed worker event, the exit report): nothing.
  recorded = (*store)->RecordGuestCrash("u1", first,
                                        hvstack::v1::VM_STATE_PAUSED, "again");
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  EXPECT_FALSE(*recorded);

  auto paused = (*store)->Get("web1");
  EXPECT_EQ(paused->state(), hvstack::v1::VM_STATE_PAUSED);
  EXPECT_EQ(paused->state_reason(), "guest crashed: Kernel panic - x");
  EXPECT_EQ(paused->last_guest_crash().summary(), "Kernel panic - x");
  EXPECT_EQ(paused->last_guest_crash().parameters(3), 0x1000u);
  auto events = (*store)->ReadEvents(0, 100);
  ASSERT_TRUE(events.ok());
  ASSERT_GE(events->size(), 2u);
  const hvstack::v1::VmEvent& crash_event = (*events)[events->size() - 2];
  const hvstack::v1::VmEvent& state_event = events->back();
  EXPECT_EQ(crash_event.kind(), hvstack::v1::VmEvent::KIND_GUEST_CRASHED);
  EXPECT_EQ(crash_event.reason(), "guest crashed on vp0: Kernel panic - x");
  EXPECT_EQ(crash_event.state(), hvstack::v1::VM_STATE_RUNNING);
  EXPECT_EQ(crash_event.guest_crash().message(), "[ 1.0] Kernel panic - x\n");
  EXPECT_EQ(state_event.kind(), hvstack::v1::VmEvent::KIND_STATE_CHANGED);
  EXPECT_EQ(state_event.state(), hvstack::v1::VM_STATE_PAUSED);
  EXPECT_FALSE(state_event.has_guest_crash());

  // A later crash replaces the last one; a state the table refuses (Paused
  // -> Paused) rolls the whole record back.
  const hvstack::v1::GuestCrash second = Crash(2000000, 1, "oops 2");
  recorded = (*store)->RecordGuestCrash("u1", second,
                                        hvstack::v1::VM_STATE_PAUSED, "again");
  EXPECT_EQ(recorded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*store)->Get("web1")->last_guest_crash().summary(),
            "Kernel panic - x");
  recorded = (*store)->RecordGuestCrash("u1", second);
  ASSERT_TRUE(recorded.ok() && *recorded) << recorded.status();
  EXPECT_EQ((*store)->Get("web1")->last_guest_crash().vp(), 1u);
  EXPECT_EQ((*store)->Get("web1")->state(), hvstack::v1::VM_STATE_PAUSED);

  // The policy changes in any state; the report goes with the VM.
  hvstack::v1::VmConfig update;
  update.set_on_guest_crash(hvstack::v1::GUEST_CRASH_POLICY_RESTART);
  auto updated = (*store)->Update("u1", update, {"on_guest_crash"});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->config().on_guest_crash(),
            hvstack::v1::GUEST_CRASH_POLICY_RESTART);
  ASSERT_TRUE((*store)->SetState("u1", hvstack::v1::VM_STATE_OFF, "stop").ok());
  ASSERT_TRUE((*store)->Delete("u1").ok());
  auto db = Database::Open(dir.path() + "/vmms.db");
  EXPECT_EQ(CountRows(*db, "guest_crashes"), 0);
}

TEST(VmStoreTest, EnlightenmentSwitchRoundTripsAndNeedsTheVmOff) {
  testing::TestDir dir;
  auto store = VmStore::Open(dir.path() + "/vmms.db");
  ASSERT_TRUE(store.ok()) << store.status();
  Vm plain = NewVm("plain", "u1");
  plain.mutable_config()->set_disable_enlightenments(true);
  ASSERT_TRUE((*store)->Create(plain).ok());
  ASSERT_TRUE((*store)->Create(NewVm("enl", "u2")).ok());
  EXPECT_TRUE((*store)->Get("plain")->config().disable_enlightenments());
  EXPECT_FALSE((*store)->Get("enl")->config().disable_enlightenments());
  hvstack::v1::VmConfig update;
  update.set_disable_enlightenments(false);
  auto updated = (*store)->Update("u1", update, {"disable_enlightenments"});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_FALSE(updated->config().disable_enlightenments());
  ASSERT_TRUE(
      (*store)->SetState("u2", hvstack::v1::VM_STATE_STARTING, "start").ok());
  update.set_disable_enlightenments(true);
  EXPECT_EQ((*store)
                ->Update("u2", update, {"disable_enlightenments"})
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(VmStoreTest, CreateGetListAndDuplicates) {
  testing::TestDir dir;
  auto store = VmStore::Open(dir.path() + "/vmms.db");
  ASSERT_TRUE(store.ok()) << store.status();
  auto created = (*store)->Create(NewVm("web1", "u1"));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->state(), hvstack::v1::VM_STATE_OFF);
  EXPECT_EQ(created->state_reason(), "created");
  EXPECT_EQ(created->config().cmdline(), "console=ttyS0");
  EXPECT_GT(created->create_time().seconds(), 0);

  auto duplicate = (*store)->Create(NewVm("web1", "u2"));
  EXPECT_EQ(duplicate.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(duplicate.status().message(), HasSubstr("'web1'"));

  ASSERT_TRUE((*store)->Create(NewVm("db1", "u3")).ok());
  auto list = (*store)->List();
  ASSERT_THAT(*list, SizeIs(2));
  EXPECT_EQ((*list)[0].name(), "db1");  // Ordered by name.

  auto missing = (*store)->Get("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("'nope'"));
}

TEST(VmStoreTest, StateChangesAreRecordedWithHistory) {
  testing::TestDir dir;
  auto store = *VmStore::Open(dir.path() + "/vmms.db");
  ASSERT_TRUE(store->Create(NewVm("web1", "u1")).ok());
  ASSERT_TRUE(
      store->SetState("u1", hvstack::v1::VM_STATE_STARTING, "start requested")
          .ok());
  auto running = store->SetState("u1", hvstack::v1::VM_STATE_RUNNING,
                                 "worker ready", 4242);
  ASSERT_TRUE(running.ok());
  EXPECT_EQ(running->worker_pid(), 4242);
  auto off =
      store->SetState("u1", hvstack::v1::VM_STATE_OFF, "guest powered off", 0);
  EXPECT_EQ(off->worker_pid(), 0);
  EXPECT_EQ(off->state_reason(), "guest powered off");

  auto history = store->History("u1");
  ASSERT_TRUE(history.ok());
  ASSERT_THAT(*history, SizeIs(4));
  EXPECT_EQ((*history)[0].from, hvstack::v1::VM_STATE_UNSPECIFIED);
  EXPECT_EQ((*history)[0].reason, "created");
  EXPECT_EQ((*history)[2].from, hvstack::v1::VM_STATE_STARTING);
  EXPECT_EQ((*history)[2].to, hvstack::v1::VM_STATE_RUNNING);
  EXPECT_EQ((*history)[3].reason, "guest powered off");
}

TEST(VmStoreTest, RowsCarryThePeerOfTheRequestThatWroteThem) {
  testing::TestDir dir;
  auto store = *VmStore::Open(dir.path() + "/vmms.db");
  {
    ScopedRequestPeer peer("uid=1000 pid=42 (vmctl)");
    ASSERT_TRUE(store->Create(NewVm("web1", "u1")).ok());
    {
      ScopedRequestPeer inner("uid=0 pid=7 (other)");
      ASSERT_TRUE(
          store->SetState("u1", hvstack::v1::VM_STATE_STARTING, "start").ok());
    }
    EXPECT_EQ(CurrentRequestPeer(), "uid=1000 pid=42 (vmctl)");
  }
  // A thread with no request behind it: vmms's own decision.
  std::thread([&] {
    ASSERT_TRUE(
        store->SetState("u1", hvstack::v1::VM_STATE_OFF, "guest powered off")
            .ok());
  }).join();
  auto history = store->History("u1");
  ASSERT_TRUE(history.ok());
  ASSERT_THAT(*history, SizeIs(3));
  EXPECT_EQ((*history)[0].peer, "uid=1000 pid=42 (vmctl)");
  EXPECT_EQ((*history)[1].peer, "uid=0 pid=7 (other)");
  EXPECT_EQ((*history)[2].peer, "");
  auto events = store->ReadEvents(0, 10);
  ASSERT_TRUE(events.ok());
  ASSERT_THAT(*events, SizeIs(3));
  EXPECT_EQ((*events)[0].peer(), "uid=1000 pid=42 (vmctl)");
  EXPECT_EQ((*events)[1].peer(), "uid=0 pid=7 (other)");
  EXPECT_EQ((*events)[2].peer(), "");
  EXPECT_EQ(CurrentRequestPeer(), "");
}

TEST(VmStoreTest, DeleteCascadesToHistory) {
  testing::TestDir dir;
  const std::string path = dir.path() + "/vmms.db";
  {
    auto store = *VmStore::Open(path);
    ASSERT_TRUE(store->Create(NewVm("web1", "u1")).ok());
    ASSERT_TRUE(
        store->SetState("u1", hvstack::v1::VM_STATE_STARTING, "start").ok());
    ASSERT_TRUE(store->SetState("u1", hvstack::v1::VM_STATE_CRASHED, "x").ok());
    ASSERT_TRUE(store->Delete("u1").ok());
    EXPECT_EQ(store->Delete("u1").code(), absl::StatusCode::kNotFound);
  }
  auto db = Database::Open(path);
  EXPECT_EQ(CountRows(*db, "vms"), 0);
  EXPECT_EQ(CountRows(*db, "vm_state_history"), 0);
}

TEST(VmStoreTest, DefinitionsSurviveReopening) {
  testing::TestDir dir;
  const std::string path = dir.path() + "/vmms.db";
  {
    auto store = *VmStore::Open(path);
    ASSERT_TRUE(store->Create(NewVm("web1", "u1")).ok());
    ASSERT_TRUE(
        store->SetState("u1", hvstack::v1::VM_STATE_STARTING, "start").ok());
    ASSERT_TRUE(
        store->SetState("u1", hvstack::v1::VM_STATE_CRASHED, "guest crashed: x")
            .ok());
  }
  auto store = *VmStore::Open(path);
  auto vm = store->Get("web1");
  ASSERT_TRUE(vm.ok());
  EXPECT_EQ(vm->uuid(), "u1");
  EXPECT_EQ(vm->config().vcpus(), 2u);
  EXPECT_EQ(vm->config().memory_mib(), 128u);
  EXPECT_EQ(vm->config().kernel_path(), "/boot/k");
  EXPECT_EQ(vm->state(), hvstack::v1::VM_STATE_CRASHED);
  EXPECT_EQ(vm->state_reason(), "guest crashed: x");
  EXPECT_THAT(*store->History("u1"), SizeIs(3));
}

TEST(MigrationsTest, V5RebuildKeepsVmsHistoryAndEventSequences) {
  testing::TestDir dir;
  const std::string path = dir.path() + "/vmms.db";
  {
    auto db = Database::Open(path);
    ASSERT_TRUE(ApplyMigrations(*db, SchemaMigrations().first(4)).ok());
    ASSERT_TRUE(db->Exec(R"sql(
INSERT INTO vms (uuid, name, vcpus, memory_mib, kernel_path, state,
  create_time_us, update_time_us, state_change_time_us, reboot_count)
  VALUES ('u1', 'web1', 2, 128, '/boot/k', 'running', 1, 2, 3, 4);
INSERT INTO vm_state_history (id, vm_uuid, from_state, to_state, reason,
  time_us) VALUES (7, 'u1', NULL, 'off', 'created', 1),
                  (9, 'u1', 'off', 'running', 'x', 2);
INSERT INTO events (sequence, time_us, vm_uuid, vm_name, kind, state)
  VALUES (41, 1, 'u1', 'web1', 'created', 'off'),
         (42, 2, 'u1', 'web1', 'state_changed', 'running');
)sql")
                    .ok());
    // A v4 database refuses the new state.
    EXPECT_FALSE(db->Exec("UPDATE vms SET state = 'paused'").ok());
  }
  auto store = VmStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  auto vm = (*store)->Get("web1");
  ASSERT_TRUE(vm.ok()) << vm.status();
  EXPECT_EQ(vm->state(), hvstack::v1::VM_STATE_RUNNING);
  EXPECT_EQ(vm->reboot_count(), 4u);
  EXPECT_FALSE(vm->config().autostart());
  EXPECT_EQ(vm->config().restart_policy(), hvstack::v1::RESTART_POLICY_NEVER);
  auto history = (*store)->History("u1");
  ASSERT_THAT(*history, SizeIs(2));
  EXPECT_EQ((*history)[1].reason, "x");
  // Paused is now a state; the event log continues after 42, never reusing.
  auto paused = (*store)->SetState("u1", hvstack::v1::VM_STATE_PAUSED, "p");
  ASSERT_TRUE(paused.ok()) << paused.status();
  auto events = (*store)->ReadEvents(41, 10);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_THAT(*events, SizeIs(2));
  EXPECT_EQ((*events)[0].sequence(), 42u);
  EXPECT_EQ((*events)[1].sequence(), 43u);
  EXPECT_EQ((*events)[1].state(), hvstack::v1::VM_STATE_PAUSED);
  // The history still cascades on delete.
  ASSERT_TRUE((*store)->SetState("u1", hvstack::v1::VM_STATE_OFF, "o").ok());
  ASSERT_TRUE((*store)->Delete("u1").ok());
  auto db = Database::Open(path);
  EXPECT_EQ(CountRows(*db, "vm_state_history"), 0);
  EXPECT_FALSE(TableExists(*db, "vm_state_history_v4"));
}

TEST(VmStoreTest, RefusesTransitionsTheTableDoesNotList) {
  testing::TestDir dir;
  auto store = *VmStore::Open(dir.path() + "/vmms.db");
  ASSERT_TRUE(store->Create(NewVm("web1", "u1")).ok());
  auto bad = store->SetState("u1", hvstack::v1::VM_STATE_RUNNING, "magic");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(bad.status().message(),
              HasSubstr("'web1' is off; it cannot become running"));
  auto paused = store->SetState("u1", hvstack::v1::VM_STATE_PAUSED, "p");
  EXPECT_EQ(paused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(*store->History("u1"), SizeIs(1));  // Nothing recorded.
}

TEST(VmStoreTest, UpdateChangesNamedFieldsWithAnEvent) {
  testing::TestDir dir;
  auto store = *VmStore::Open(dir.path() + "/vmms.db");
  ASSERT_TRUE(store->Create(NewVm("web1", "u1")).ok());
  hvstack::v1::VmConfig config;
  config.set_memory_mib(512);
  config.set_vcpus(7);  // Not in the mask: ignored.
  config.set_autostart(true);
  config.set_restart_policy(hvstack::v1::RESTART_POLICY_ON_FAILURE);
  auto updated = store->Update("u1", config,
                               {"memory_mib", "autostart", "restart_policy"});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->config().memory_mib(), 512u);
  EXPECT_EQ(updated->config().vcpus(), 2u);
  EXPECT_TRUE(updated->config().autostart());
  EXPECT_EQ(updated->config().restart_policy(),
            hvstack::v1::RESTART_POLICY_ON_FAILURE);
  auto events = store->ReadEvents(1, 10);
  ASSERT_THAT(*events, SizeIs(1));
  EXPECT_EQ((*events)[0].kind(), hvstack::v1::VmEvent::KIND_UPDATED);
  EXPECT_EQ((*events)[0].reason(),
            "updated: memory_mib autostart restart_policy");

  // Running: the hardware is fixed, the policy is not.
  ASSERT_TRUE(store->SetState("u1", hvstack::v1::VM_STATE_STARTING, "s").ok());
  ASSERT_TRUE(store->SetState("u1", hvstack::v1::VM_STATE_RUNNING, "r").ok());
  auto refused = store->Update("u1", config, {"autostart", "vcpus"});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("stop it first"));
  config.set_autostart(false);
  EXPECT_EQ(store->Get("web1")->config().autostart(), true);  // Rolled back.
  ASSERT_TRUE(store->Update("u1", config, {"autostart"}).ok());
  EXPECT_FALSE(store->Get("web1")->config().autostart());
}

TEST(VmStoreTest, DisksRoundTripInOrderAndGoWithTheVm) {
  testing::TestDir dir;
  auto store = VmStore::Open(dir.path() + "/vmms.db");
  ASSERT_TRUE(store.ok());
  Vm vm = NewVm("web1", "u1");
  for (int i = 0; i < 2; ++i) {
    hvstack::v1::Disk* disk = vm.mutable_config()->add_disks();
    disk->set_path(absl::StrCat("/images/", i, ".qcow2"));
    disk->set_format(hvstack::v1::DISK_FORMAT_QCOW2);
    disk->set_read_only(i == 1);
    disk->mutable_address()->set_lun(i);
    disk->set_serial(absl::StrCat("serial", i));
  }
  ASSERT_TRUE((*store)->Create(vm).ok());
  auto got = (*store)->Get("web1");
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->config().disks_size(), 2);
  EXPECT_EQ(got->config().disks(1).path(), "/images/1.qcow2");
  EXPECT_TRUE(got->config().disks(1).read_only());
  EXPECT_EQ(got->config().disks(1).serial(), "serial1");

  // Attach: the lowest free LUN after 0 and 1; detach by path and address.
  hvstack::v1::Disk extra;
  extra.set_path("/images/x.raw");
  extra.set_format(hvstack::v1::DISK_FORMAT_RAW);
  extra.set_serial("sx");
  auto attached = (*store)->AttachDisk("u1", extra);
  ASSERT_TRUE(attached.ok()) << attached.status();
  ASSERT_EQ(attached->config().disks_size(), 3);
  EXPECT_EQ(attached->config().disks(2).address().lun(), 2u);
  auto again = (*store)->AttachDisk("u1", extra);
  EXPECT_TRUE(absl::IsInvalidArgument(again.status())) << again.status();
  auto detached = (*store)->DetachDisk("u1", "/images/0.qcow2", {});
  ASSERT_TRUE(detached.ok()) << detached.status();
  EXPECT_EQ(detached->config().disks_size(), 2);
  hvstack::v1::ScsiAddress lun2;
  lun2.set_lun(2);
  ASSERT_TRUE((*store)->DetachDisk("u1", "", lun2).ok());
  auto missing = (*store)->DetachDisk("u1", "/nope", {});
  EXPECT_TRUE(absl::IsNotFound(missing.status()));
  EXPECT_THAT(missing.status().message(), HasSubstr("/nope"));
  auto events = (*store)->ReadEvents(0, 10);
  ASSERT_TRUE(events.ok());
  EXPECT_THAT(events->back().reason(),
              HasSubstr("disk detached: 0:0:2 /images/x.raw (raw)"));

  // Only while Off or Crashed.
  ASSERT_TRUE(
      (*store)->SetState("u1", hvstack::v1::VM_STATE_STARTING, "t").ok());
  auto refused = (*store)->AttachDisk("u1", extra);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status()));
  EXPECT_THAT(refused.status().message(), HasSubstr("starting"));
  ASSERT_TRUE((*store)->SetState("u1", hvstack::v1::VM_STATE_OFF, "t").ok());

  // List carries every VM's disks; Delete takes them along.
  ASSERT_TRUE((*store)->Create(NewVm("web2", "u2")).ok());
  auto list = (*store)->List();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ((*list)[0].config().disks_size(), 1);
  EXPECT_EQ((*list)[1].config().disks_size(), 0);
  ASSERT_TRUE((*store)->Delete("u1").ok());
  auto db = Database::Open(dir.path() + "/vmms.db");
  EXPECT_EQ(CountRows(*db, "vm_disks"), 0);
}

hvstack::v1::NicConfig Nic(const std::string& mac, const std::string& bridge,
                           uint32_t index = 0) {
  hvstack::v1::NicConfig nic;
  nic.set_mac(mac);
  nic.set_bridge(bridge);
  nic.set_index(index);
  nic.set_mtu(1500);
  return nic;
}

TEST(VmStoreTest, NicsRoundTripWithGeneratedUniqueMacs) {
  testing::TestDir dir;
  auto store = VmStore::Open(dir.path() + "/vmms.db");
  ASSERT_TRUE(store.ok()) << store.status();
  Vm vm = NewVm("web1", "u1");
  *vm.mutable_config()->add_nics() = Nic("", "br0", 0);
  *vm.mutable_config()->add_nics() = Nic("02:00:00:00:00:07", "", 1);
  auto created = (*store)->Create(vm);
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_EQ(created->config().nics_size(), 2);
  const std::string generated = created->config().nics(0).mac();
  EXPECT_EQ(generated.substr(0, 9), "02:68:76:");
  EXPECT_EQ(created->config().nics(0).bridge(), "br0");
  EXPECT_EQ(created->config().nics(1).mac(), "02:00:00:00:00:07");
  EXPECT_EQ(created->config().nics(1).index(), 1u);
  // Persisted: the same MAC at every read, in List too.
  EXPECT_EQ((*store)->Get("web1")->config().nics(0).mac(), generated);
  auto all = (*store)->List();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ((*all)[0].config().nics_size(), 2);
  EXPECT_EQ((*all)[0].config().nics(0).mac(), generated);

  // Another VM with a MAC in use: refused, naming it, and nothing stored.
  Vm other = NewVm("web2", "u2");
  *other.mutable_config()->add_nics() = Nic("02:00:00:00:00:08", "", 0);
  *other.mutable_config()->add_nics() = Nic("02:00:00:00:00:07", "", 1);
  auto dup = (*store)->Create(other);
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dup.status().message(),
              HasSubstr("config.nics[1].mac '02:00:00:00:00:07' is already "
                        "used by VM 'web1' (adapter 1)"));
  EXPECT_EQ((*store)->Get("web2").status().code(), absl::StatusCode::kNotFound);
  auto events = (*store)->ReadEvents(0, 100);
  ASSERT_TRUE(events.ok());
  EXPECT_THAT(*events, SizeIs(1)) << "only web1's creation";

  // Deleting the VM frees its MACs.
  ASSERT_TRUE((*store)->Delete("u1").ok());
  EXPECT_TRUE((*store)->Create(other).ok());
}

TEST(VmStoreTest, AddAndRemoveNicsNeedTheVmOffAndKeepIndices) {
  testing::TestDir dir;
  auto store = VmStore::Open(dir.path() + "/vmms.db");
  ASSERT_TRUE(store.ok()) << store.status();
  Vm vm = NewVm("web1", "u1");
  *vm.mutable_config()->add_nics() = Nic("02:00:00:00:00:01", "br0", 0);
  *vm.mutable_config()->add_nics() = Nic("02:00:00:00:00:02", "br0", 1);
  ASSERT_TRUE((*store)->Create(vm).ok());
  ASSERT_TRUE((*store)->Create(NewVm("web2", "u2")).ok());

  auto removed = (*store)->RemoveNic("u1", "02:00:00:00:00:01");
  ASSERT_TRUE(removed.ok()) << removed.status();
  ASSERT_EQ(removed->config().nics_size(), 1);
  EXPECT_EQ(removed->config().nics(0).index(), 1u) << "indices stay";
  auto added = (*store)->AddNic("u1", Nic("", "", 0));
  ASSERT_TRUE(added.ok()) << added.status();
  ASSERT_EQ(added->config().nics_size(), 2);
  EXPECT_EQ(added->config().nics(0).index(), 0u) << "lowest free index";
  EXPECT_EQ(added->config().nics(0).mac().substr(0, 9), "02:68:76:");

  auto events = (*store)->ReadEvents(0, 100);
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(events->back().kind(), hvstack::v1::VmEvent::KIND_UPDATED);
  EXPECT_THAT(events->back().reason(), HasSubstr("nic added: 0 02:68:76:"));
  EXPECT_THAT(events->back().reason(), HasSubstr("(unattached)"));
  EXPECT_EQ((*events)[events->size() - 2].reason(),
            "nic removed: 0 02:00:00:00:00:01");

  auto unknown = (*store)->RemoveNic("u1", "02:00:00:00:00:09");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.status().message(),
              HasSubstr("VM 'web1' has no network adapter with MAC "
                        "'02:00:00:00:00:09'"));
  auto taken = (*store)->AddNic("u2", Nic("02:00:00:00:00:02", "", 0));
  EXPECT_EQ(taken.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(taken.status().message(), HasSubstr("already used by VM 'web1'"));

  for (int i = 0; i < 8; ++i)
    ASSERT_TRUE((*store)->AddNic("u2", Nic("", "", 0)).ok());
  auto full = (*store)->AddNic("u2", Nic("", "", 0));
  EXPECT_EQ(full.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(full.status().message(), HasSubstr("has 8 network adapters"));

  ASSERT_TRUE(
      (*store)->SetState("u1", hvstack::v1::VM_STATE_STARTING, "start").ok());
  auto running = (*store)->AddNic("u1", Nic("", "", 0));
  EXPECT_EQ(running.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(running.status().message(), HasSubstr("VM 'web1' is starting"));
  EXPECT_EQ((*store)->RemoveNic("u1", "02:00:00:00:00:02").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*store)->Get("web1")->config().nics_size(), 2);
}

TEST(MigrationsTest, VersionsAreConsecutiveWithCrashNicsAndBackendAt11To13) {
  std::span<const Migration> all = SchemaMigrations();
  for (size_t i = 0; i < all.size(); ++i)
    EXPECT_EQ(all[i].version, static_cast<int>(i + 1)) << all[i].description;
  ASSERT_GE(all.size(), 13u);
  EXPECT_THAT(std::string(all[10].description), HasSubstr("guest crash"));
  EXPECT_THAT(std::string(all[11].description), HasSubstr("network adapters"));
  EXPECT_THAT(std::string(all[12].description), HasSubstr("backend"));
  ASSERT_GE(all.size(), 14u);
  EXPECT_THAT(std::string(all[13].description), HasSubstr("adopted"));
}

TEST(VmStoreTest, V11DatabaseGainsNicsAndBackendsAndKeepsItsCrashPolicy) {
  testing::TestDir dir;
  const std::string path = dir.path() + "/vmms.db";
  {
    // A v11 database (guest crash policies, no adapters, no backends).
    auto db = Database::Open(path);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(ApplyMigrations(*db, SchemaMigrations().first(11)).ok());
    ASSERT_TRUE(db->Exec("INSERT INTO vms (uuid, name, vcpus, memory_mib, "
                         "kernel_path, cmdline, state, state_reason, "
                         "create_time_us, update_time_us, "
                         "state_change_time_us, on_guest_crash) VALUES "
                         "('u0', 'old', 1, 64, '/boot/k', '', 'off', "
                         "'created', 0, 0, 0, 'preserve')")
                    .ok());
  }
  auto store = VmStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  auto old = (*store)->Get("old");
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->config().on_guest_crash(),
            hvstack::v1::GUEST_CRASH_POLICY_PRESERVE);
  EXPECT_NE(old->config().backend(), hvstack::v1::BACKEND_LIBVIRT);
  EXPECT_EQ(old->config().nics_size(), 0);

  // Every column of a new row reads back in its place (on_guest_crash,
  // backend, libvirt_accelerator) next to its adapters.
  Vm vm = NewVm("web1", "u1");
  vm.mutable_config()->set_on_guest_crash(
      hvstack::v1::GUEST_CRASH_POLICY_RESTART);
  vm.mutable_config()->set_backend(hvstack::v1::BACKEND_LIBVIRT);
  vm.mutable_config()->mutable_libvirt()->set_accelerator(
      hvstack::v1::LibvirtOptions::ACCELERATOR_TCG);
  hvstack::v1::NicConfig nic;
  nic.set_mac("02:00:00:00:00:05");
  nic.set_mtu(1500);
  *vm.mutable_config()->add_nics() = nic;
  ASSERT_TRUE((*store)->Create(vm).ok());
  auto got = (*store)->Get("web1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->config().on_guest_crash(),
            hvstack::v1::GUEST_CRASH_POLICY_RESTART);
  EXPECT_EQ(got->config().backend(), hvstack::v1::BACKEND_LIBVIRT);
  EXPECT_EQ(got->config().libvirt().accelerator(),
            hvstack::v1::LibvirtOptions::ACCELERATOR_TCG);
  ASSERT_EQ(got->config().nics_size(), 1);
  EXPECT_EQ(got->config().nics(0).mac(), "02:00:00:00:00:05");
}

// An adopted libvirt domain keeps its libvirt name (v14); the created and
// deleted events carry the adoption's and the release's reasons.
TEST(VmStoreTest, AdoptedDomainNameAndAdoptionReasonsRoundTrip) {
  testing::TestDir dir;
  auto store = VmStore::Open(dir.path() + "/vmms.db");
  ASSERT_TRUE(store.ok()) << store.status();
  Vm vm = NewVm("web", "u-adopted");
  vm.mutable_config()->set_backend(hvstack::v1::BACKEND_LIBVIRT);
  vm.mutable_libvirt()->set_adopted(true);
  vm.mutable_libvirt()->set_domain_name("their-domain");
  ASSERT_TRUE((*store)->Create(vm, "adopted from libvirt (domain x)").ok());
  Vm own = NewVm("defined", "u-defined");
  own.mutable_config()->set_backend(hvstack::v1::BACKEND_LIBVIRT);
  ASSERT_TRUE((*store)->Create(own).ok());
  auto got = (*store)->Get("web");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->libvirt().adopted());
  EXPECT_EQ(got->libvirt().domain_name(), "their-domain");
  EXPECT_FALSE((*store)->Get("defined")->libvirt().adopted());
  auto history = (*store)->History("u-adopted");
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 1u);
  EXPECT_EQ((*history)[0].reason, "adopted from libvirt (domain x)");
  ASSERT_TRUE((*store)->Delete("u-adopted", "released").ok());
  EXPECT_FALSE((*store)->Get("web").ok());
}

TEST(VmStoreTest, V14DatabaseGainsTheSavedStateAndKeepsEveryChildRow) {
  testing::TestDir dir;
  const std::string path = dir.path() + "/vmms.db";
  std::string uuid;
  {
    // A v14 vmms's VM with history, a disk, an adapter and a crash report:
    // v15 rebuilds `vms`, whose children must survive (not cascade away).
    auto store = VmStore::Open(path);
    ASSERT_TRUE(store.ok());
    Vm vm = NewVm("web1", "u1");
    hvstack::v1::NicConfig nic;
    nic.set_mac("02:00:00:00:00:07");
    nic.set_mtu(1500);
    *vm.mutable_config()->add_nics() = nic;
    ASSERT_TRUE((*store)->Create(vm).ok());
    hvstack::v1::Disk disk;
    disk.set_path("/var/lib/d.raw");
    disk.set_format(hvstack::v1::DISK_FORMAT_RAW);
    disk.set_serial("00000000000000000001");
    ASSERT_TRUE((*store)->AttachDisk("u1", disk).ok());
    ASSERT_TRUE(
        (*store)->RecordGuestCrash("u1", Crash(5000000, 0, "oops")).ok());
  }
  {
    auto db = Database::Open(path);
    ASSERT_TRUE(db.ok());
    // Back to v14 as a v14 vmms left it: the v15 parts undone.
    ASSERT_TRUE(db->Exec("DROP TABLE vm_checkpoint_disks; DROP TABLE "
                         "vm_checkpoints; DROP TABLE vm_saved_states; DELETE "
                         "FROM schema_version WHERE version >= 15")
                    .ok());
  }
  auto store = VmStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  auto vm = (*store)->Get("web1");
  ASSERT_TRUE(vm.ok()) << vm.status();
  EXPECT_EQ(vm->config().disks_size(), 1);
  EXPECT_EQ(vm->config().nics_size(), 1);
  EXPECT_TRUE(vm->has_last_guest_crash());
  auto history = (*store)->History("u1");
  ASSERT_TRUE(history.ok());
  EXPECT_GE(history->size(), 1u);
  // Saved with its row, in one transaction; dropped with Off.
  for (VmState s :
       {hvstack::v1::VM_STATE_STARTING, hvstack::v1::VM_STATE_RUNNING,
        hvstack::v1::VM_STATE_SAVING}) {
    ASSERT_TRUE((*store)->SetState("u1", s, "x").ok());
  }
  hvstack::v1::SavedStateInfo info;
  info.set_saved_from(hvstack::v1::VM_STATE_RUNNING);
  info.set_state_file("/s/state");
  info.set_memory_file("/s/memory");
  info.set_state_bytes(123);
  info.set_memory_pages_written(5);
  info.set_memory_pages_total(16384);
  auto saved = (*store)->RecordSaved("u1", info, "saved by user");
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->state(), hvstack::v1::VM_STATE_SAVED);
  EXPECT_EQ(saved->saved_state().state_bytes(), 123u);
  EXPECT_EQ(saved->saved_state().saved_from(), hvstack::v1::VM_STATE_RUNNING);
  EXPECT_EQ((*store)->Get("web1")->saved_state().memory_file(), "/s/memory");
  // Saved has no worker: not Running or Crashed from here.
  EXPECT_FALSE(
      (*store)->SetState("u1", hvstack::v1::VM_STATE_RUNNING, "x").ok());
  auto off = (*store)->DropSaved("u1", hvstack::v1::VM_STATE_OFF, "discarded");
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_FALSE(off->has_saved_state());
  EXPECT_EQ((*store)->Get("web1")->config().disks_size(), 1);
}

TEST(VmStoreTest, V15DatabaseGainsCheckpointsThatGoWithTheVm) {
  testing::TestDir dir;
  const std::string path = dir.path() + "/vmms.db";
  {
    auto store = VmStore::Open(path);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Create(NewVm("web1", "u1")).ok());
  }
  {
    auto db = Database::Open(path);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(db->Exec("DROP TABLE vm_checkpoint_disks; DROP TABLE "
                         "vm_checkpoints; DELETE FROM schema_version WHERE "
                         "version >= 16")
                    .ok());
  }
  auto store = VmStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  hvstack::v1::Checkpoint c;
  c.set_name("c1");
  c.set_vm_state(hvstack::v1::VM_STATE_OFF);
  c.mutable_config()->set_vcpus(3);
  std::vector<CheckpointDisk> frozen = {
      {"/d.raw", hvstack::v1::DISK_FORMAT_RAW, false}};
  hvstack::v1::Disk overlay;
  overlay.set_path("/o.qcow2");
  overlay.set_format(hvstack::v1::DISK_FORMAT_QCOW2);
  overlay.set_serial("00000000000000000001");
  ASSERT_TRUE((*store)->RecordCheckpoint("u1", c, frozen, {overlay}).ok());
  EXPECT_EQ((*store)->Get("web1")->config().disks(0).path(), "/o.qcow2");
  c.set_name("c2");
  ASSERT_TRUE((*store)->RecordCheckpoint("u1", c, {}, {}).ok());
  EXPECT_EQ((*store)->RecordCheckpoint("u1", c, {}, {}).status().code(),
            absl::StatusCode::kAlreadyExists);
  auto all = (*store)->Checkpoints("u1");
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[1].checkpoint.parent(), "c1");
  EXPECT_TRUE((*all)[1].checkpoint.current());
  EXPECT_EQ((*all)[0].checkpoint.config().vcpus(), 3u);
  ASSERT_EQ((*all)[0].disks.size(), 1u);
  EXPECT_EQ((*all)[0].disks[0].path, "/d.raw");
  // Deleting c1 makes c2 a root.
  ASSERT_TRUE((*store)->RecordCheckpointDeleted("u1", (*all)[0].id, "c1").ok());
  all = (*store)->Checkpoints("u1");
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].checkpoint.parent(), "");
  // The rows go with the VM.
  ASSERT_TRUE((*store)->Delete("u1").ok());
  auto db = Database::Open(path);
  auto count = db->Prepare("SELECT COUNT(*) FROM vm_checkpoints");
  ASSERT_TRUE(count.ok());
  ASSERT_TRUE(*count->Step());
  EXPECT_EQ(count->ColumnInt64(0), 0);
}

}  // namespace
}  // namespace vmms
