// SIGKILL vmms in the middle of writes (create, update, start, pause,
// resume, stop, delete), again and again, and check after each
// kill (before anyone repairs anything) and after each restart that the
// database is intact and that no VM is half written:
//   - PRAGMA integrity_check is "ok", foreign_key_check finds nothing;
//   - every VM row is complete (valid state, vcpus, memory, kernel, name);
//   - its last history row and its last event agree with its state (they are
//     written in the state change's transaction), it has its creation row;
//   - no history row of a VM that is gone; every VM that is gone has its
//     'deleted' event; the event sequence has no gaps;
//   - what vmms acknowledged to a client stayed done (a created VM exists, a
//     deleted one does not);
//   - a follower of WatchEvents that resumes from its last sequence after each
//     restart received every sequence exactly once, in order, each as stored;
//   - after the restart no VM stays Starting or Stopping (the new vmms takes
//     the workers over or records their end).
// Real processes: vmms, vmwp running the spin guest, clients over gRPC.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/hvstack/v1/vm.grpc.pb.h"
#include "tests/harness/process.h"
#include "tests/harness/vmms_instance.h"

namespace hvtest {
namespace {

using hvstack::v1::VmService;

constexpr int kRounds = 6;
constexpr int kClients = 3;

// Every problem found in the database, one line each.
std::vector<std::string> CheckDatabase(const std::string& path) {
  std::vector<std::string> problems;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) !=
      SQLITE_OK) {
    problems.push_back(absl::StrCat("cannot open ", path));
    sqlite3_close(db);
    return problems;
  }
  sqlite3_busy_timeout(db, 5000);
  // All rows of a query as "a|b|c" strings.
  auto rows = [&](const std::string& sql) {
    std::vector<std::string> out;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      problems.push_back(absl::StrCat(sql, ": ", sqlite3_errmsg(db)));
      return out;
    }
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      std::vector<std::string> cols;
      for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
        const unsigned char* t = sqlite3_column_text(stmt, i);
        cols.push_back(t == nullptr ? "NULL"
                                    : reinterpret_cast<const char*>(t));
      }
      out.push_back(absl::StrJoin(cols, "|"));
    }
    sqlite3_finalize(stmt);
    return out;
  };
  auto expect_none = [&](const std::string& what, const std::string& sql) {
    for (const std::string& row : rows(sql)) {
      problems.push_back(absl::StrCat(what, ": ", row));
    }
  };
  std::vector<std::string> integrity = rows("PRAGMA integrity_check");
  if (integrity != std::vector<std::string>{"ok"}) {
    problems.push_back("integrity_check: " + absl::StrJoin(integrity, "; "));
  }
  expect_none("foreign key violation", "PRAGMA foreign_key_check");
  expect_none("incomplete VM row",
              "SELECT uuid, name, state FROM vms WHERE uuid = '' OR name = '' "
              "OR vcpus < 1 OR memory_mib < 16 OR kernel_path = '' OR state "
              "NOT IN ('off', 'starting', 'running', 'paused', 'stopping', "
              "'saving', 'restoring', 'crashed')");
  expect_none("history row of a VM that does not exist",
              "SELECT h.id, h.vm_uuid FROM vm_state_history h LEFT JOIN vms v "
              "ON v.uuid = h.vm_uuid WHERE v.uuid IS NULL");
  expect_none("VM without its creation history row",
              "SELECT name FROM vms v WHERE NOT EXISTS (SELECT 1 FROM "
              "vm_state_history h WHERE h.vm_uuid = v.uuid AND h.from_state IS "
              "NULL)");
  expect_none("VM whose state is not its last history row's",
              "SELECT name, state FROM vms v WHERE state != (SELECT to_state "
              "FROM vm_state_history h WHERE h.vm_uuid = v.uuid ORDER BY id "
              "DESC LIMIT 1)");
  expect_none("VM whose state is not its last event's",
              "SELECT name, state FROM vms v WHERE state != (SELECT state FROM "
              "events e WHERE e.vm_uuid = v.uuid ORDER BY sequence DESC LIMIT "
              "1)");
  expect_none("VM without its 'created' event",
              "SELECT name FROM vms v WHERE NOT EXISTS (SELECT 1 FROM events e "
              "WHERE e.vm_uuid = v.uuid AND e.kind = 'created')");
  expect_none("VM gone without a 'deleted' event",
              "SELECT DISTINCT vm_name FROM events e WHERE NOT EXISTS (SELECT "
              "1 FROM vms v WHERE v.uuid = e.vm_uuid) AND NOT EXISTS (SELECT 1 "
              "FROM events d WHERE d.vm_uuid = e.vm_uuid AND d.kind = "
              "'deleted')");
  expect_none("gap in the event sequence",
              "SELECT MIN(sequence), MAX(sequence), COUNT(*) FROM events "
              "HAVING MAX(sequence) - MIN(sequence) + 1 != COUNT(*)");
  sqlite3_close(db);
  return problems;
}

grpc::ClientContext* WithDeadline(grpc::ClientContext* context,
                                  absl::Duration timeout) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return context;
}

// What vmms acknowledged about each VM name: true = created (exists), false =
// deleted. A name whose last request got no answer is left out: either
// outcome is right.
class Acknowledged {
 public:
  void Set(const std::string& name, std::optional<bool> exists) {
    absl::MutexLock lock(&mu_);
    if (exists.has_value()) {
      known_[name] = *exists;
    } else {
      known_.erase(name);
    }
  }
  std::map<std::string, bool> Get() {
    absl::MutexLock lock(&mu_);
    return known_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, bool> known_ ABSL_GUARDED_BY(mu_);
};

// create -> update -> start -> pause -> resume -> stop -> delete, over and
// over, on names of its own,
// until `stop` is set. Failures are expected while vmms is down.
void Client(int id, const std::string& socket, const std::string& kernel,
            std::atomic<bool>* stop, Acknowledged* acked, int* counter) {
  auto stub = VmService::NewStub(grpc::CreateChannel(
      "unix:" + socket, grpc::InsecureChannelCredentials()));
  while (!stop->load()) {
    const std::string name = absl::StrCat("c", id, "-", (*counter)++);
    hvstack::v1::CreateVmRequest create;
    create.set_name(name);
    create.mutable_config()->set_vcpus(1);
    create.mutable_config()->set_memory_mib(16);
    create.mutable_config()->set_kernel_path(kernel);
    grpc::ClientContext c1;
    hvstack::v1::Vm vm;
    acked->Set(name, std::nullopt);
    grpc::Status s =
        stub->CreateVm(WithDeadline(&c1, absl::Seconds(10)), create, &vm);
    if (!s.ok()) {
      absl::SleepFor(absl::Milliseconds(20));
      continue;
    }
    acked->Set(name, true);
    // A definition change while Off (an 'updated' event in its transaction).
    hvstack::v1::UpdateVmRequest update;
    update.set_name(name);
    update.mutable_config()->set_cmdline(absl::StrCat("round ", *counter));
    update.mutable_update_mask()->add_paths("cmdline");
    grpc::ClientContext c1b;
    (void)stub->UpdateVm(WithDeadline(&c1b, absl::Seconds(10)), update, &vm);
    hvstack::v1::StartVmRequest start;
    start.set_name(name);
    grpc::ClientContext c2;
    (void)stub->StartVm(WithDeadline(&c2, absl::Seconds(10)), start, &vm);
    // Running -> Paused -> Running.
    hvstack::v1::PauseVmRequest pause;
    pause.set_name(name);
    grpc::ClientContext c2b;
    (void)stub->PauseVm(WithDeadline(&c2b, absl::Seconds(10)), pause, &vm);
    hvstack::v1::ResumeVmRequest resume;
    resume.set_name(name);
    grpc::ClientContext c2c;
    (void)stub->ResumeVm(WithDeadline(&c2c, absl::Seconds(10)), resume, &vm);
    hvstack::v1::StopVmRequest stop_request;
    stop_request.set_name(name);
    grpc::ClientContext c3;
    (void)stub->StopVm(WithDeadline(&c3, absl::Seconds(10)), stop_request, &vm);
    hvstack::v1::DeleteVmRequest del;
    del.set_name(name);
    grpc::ClientContext c4;
    google::protobuf::Empty empty;
    acked->Set(name, std::nullopt);
    if (stub->DeleteVm(WithDeadline(&c4, absl::Seconds(10)), del, &empty)
            .ok()) {
      acked->Set(name, false);
    }
  }
}

struct Received {
  uint64_t sequence;
  std::string vm_uuid;
  std::string kind;
  std::string state;
};

// Follows WatchEvents, resuming from the last sequence it saw after every
// error (vmms killed), until `stop` is set and it has caught up with
// `target` (the last sequence in the database).
void Follower(const std::string& socket, std::atomic<bool>* stop,
              std::atomic<uint64_t>* target, absl::Mutex* mu,
              std::vector<Received>* received) {
  auto stub = VmService::NewStub(grpc::CreateChannel(
      "unix:" + socket, grpc::InsecureChannelCredentials()));
  uint64_t last = 0;
  while (!(stop->load() && last >= target->load())) {
    hvstack::v1::WatchEventsRequest request;
    request.set_after_sequence(last);
    request.set_follow(true);
    grpc::ClientContext context;
    // Short calls: re-checks `stop` now and then even without events.
    WithDeadline(&context, absl::Seconds(2));
    auto reader = stub->WatchEvents(&context, request);
    hvstack::v1::VmEvent event;
    while (reader->Read(&event)) {
      last = event.sequence();
      absl::MutexLock lock(mu);
      received->push_back({event.sequence(), event.vm_uuid(),
                           hvstack::v1::VmEvent::Kind_Name(event.kind()),
                           hvstack::v1::VmState_Name(event.state())});
    }
    (void)reader->Finish();
    if (stop->load() && last < target->load()) continue;
    absl::SleepFor(absl::Milliseconds(10));
  }
}

TEST(IntegrityTest, SigkillDuringWritesLeavesNoHalfWrittenVm) {
  if (access("/dev/kvm", R_OK | W_OK) != 0) {
    GTEST_SKIP() << "needs read/write access to /dev/kvm";
  }
  TempDir dir;
  // Killed vmms leave workers running: the default SIGTERM at the end stops
  // every VM of the last vmms, which has taken all of them over.
  VmmsInstance vmms(dir.path());
  ASSERT_TRUE(vmms.Start().ok()) << vmms.Log();
  const std::string db_path = dir.path() + "/vmms.db";
  const std::string kernel = Runfile("guest/spin.elf");

  Acknowledged acked;
  std::atomic<bool> follower_stop{false};
  std::atomic<uint64_t> target{0};
  absl::Mutex received_mu;
  std::vector<Received> received;
  std::thread follower(Follower, vmms.socket_path(), &follower_stop, &target,
                       &received_mu, &received);
  std::vector<int> counters(kClients, 0);
  std::mt19937 random(4242);
  int kills_mid_request = 0;

  for (int round = 0; round < kRounds; ++round) {
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int i = 0; i < kClients; ++i) {
      clients.emplace_back(Client, i, vmms.socket_path(), kernel, &stop, &acked,
                           &counters[i]);
    }
    absl::SleepFor(absl::Milliseconds(
        std::uniform_int_distribution<int>(150, 600)(random)));
    vmms.Kill();
    stop = true;
    for (std::thread& t : clients) t.join();

    // As the crash left it, before any vmms opens it.
    std::vector<std::string> problems = CheckDatabase(db_path);
    EXPECT_THAT(problems, ::testing::IsEmpty()) << "after kill " << round;

    ASSERT_TRUE(vmms.Start().ok()) << vmms.Log();
    auto stub = VmService::NewStub(grpc::CreateChannel(
        "unix:" + vmms.socket_path(), grpc::InsecureChannelCredentials()));
    // Acknowledged results held.
    for (const auto& [name, exists] : acked.Get()) {
      hvstack::v1::GetVmRequest get;
      get.set_name(name);
      grpc::ClientContext context;
      hvstack::v1::Vm vm;
      grpc::Status s =
          stub->GetVm(WithDeadline(&context, absl::Seconds(5)), get, &vm);
      EXPECT_EQ(s.ok(), exists)
          << name << " was acknowledged " << (exists ? "created" : "deleted")
          << " before kill " << round << ": " << s.error_message();
    }
    // The restarted vmms leaves nothing in a transitional state.
    hvstack::v1::ListVmsResponse list;
    {
      grpc::ClientContext context;
      ASSERT_TRUE(stub->ListVms(WithDeadline(&context, absl::Seconds(5)),
                                hvstack::v1::ListVmsRequest(), &list)
                      .ok());
    }
    for (const hvstack::v1::Vm& vm : list.vms()) {
      EXPECT_NE(vm.state(), hvstack::v1::VM_STATE_STARTING) << vm.name();
      EXPECT_NE(vm.state(), hvstack::v1::VM_STATE_STOPPING) << vm.name();
      if (vm.state() != hvstack::v1::VM_STATE_OFF &&
          vm.state() != hvstack::v1::VM_STATE_CRASHED) {
        ++kills_mid_request;  // A VM the kill caught running.
      }
    }
    problems = CheckDatabase(db_path);
    EXPECT_THAT(problems, ::testing::IsEmpty()) << "after restart " << round;
    // Stop what the kill left running: spinning guests cost a core each here.
    for (const hvstack::v1::Vm& vm : list.vms()) {
      if (vm.state() == hvstack::v1::VM_STATE_OFF ||
          vm.state() == hvstack::v1::VM_STATE_CRASHED) {
        continue;
      }
      // Stopping a Paused VM is allowed; whatever the state, StopVm's answer
      // is checked.
      hvstack::v1::StopVmRequest stop_request;
      stop_request.set_name(vm.name());
      grpc::ClientContext context;
      hvstack::v1::Vm stopped;
      EXPECT_TRUE(stub->StopVm(WithDeadline(&context, absl::Seconds(10)),
                               stop_request, &stopped)
                      .ok())
          << vm.name();
    }
  }

  // The follower received every sequence once, in order, as stored.
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(
        sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
        SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT MAX(sequence) FROM events", -1,
                                 &stmt, nullptr),
              SQLITE_OK);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    target = static_cast<uint64_t>(sqlite3_column_int64(stmt, 0));
    sqlite3_finalize(stmt);
    sqlite3_close(db);
  }
  follower_stop = true;
  follower.join();
  absl::MutexLock lock(&received_mu);
  ASSERT_FALSE(received.empty());
  EXPECT_GE(received.back().sequence, target.load());
  for (size_t i = 0; i < received.size(); ++i) {
    ASSERT_EQ(received[i].sequence, i + 1) << "gap or duplicate at " << i;
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(
      sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
      SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "SELECT sequence, vm_uuid, kind, state FROM "
                               "events ORDER BY sequence",
                               -1, &stmt, nullptr),
            SQLITE_OK);
  size_t matched = 0;
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    uint64_t seq = static_cast<uint64_t>(sqlite3_column_int64(stmt, 0));
    if (seq == 0 || seq > received.size()) continue;
    const Received& r = received[seq - 1];
    EXPECT_EQ(r.vm_uuid,
              reinterpret_cast<const char*>(sqlite3_column_text(stmt, 1)))
        << seq;
    // Stored "state_changed"/"running" vs the proto's KIND_STATE_CHANGED /
    // VM_STATE_RUNNING.
    std::string kind =
        reinterpret_cast<const char*>(sqlite3_column_text(stmt, 2));
    std::string state =
        reinterpret_cast<const char*>(sqlite3_column_text(stmt, 3));
    EXPECT_EQ(r.kind, "KIND_" + absl::AsciiStrToUpper(kind)) << seq;
    EXPECT_EQ(r.state, "VM_STATE_" + absl::AsciiStrToUpper(state)) << seq;
    ++matched;
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  EXPECT_EQ(matched, received.size());
  int created = 0;
  for (int c : counters) created += c;
  std::printf(
      "%d kills; %d VM names used by %d clients; %zu events followed across "
      "restarts; %d VMs found running after a kill and taken over\n",
      kRounds, created, kClients, received.size(), kills_mid_request);
  // Stops every worker the last vmms took over.
  EXPECT_TRUE(vmms.Terminate().ok());

  // The checks above can fail: a history row of no VM and a hole in the
  // event sequence are found.
  ASSERT_EQ(
      sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr),
      SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "PRAGMA foreign_keys = OFF; INSERT INTO "
                         "vm_state_history (vm_uuid, from_state, to_state, "
                         "reason, time_us) VALUES ('no-such-vm', 'off', "
                         "'running', 'x', 0); DELETE FROM events WHERE "
                         "sequence = 2",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  std::vector<std::string> problems = CheckDatabase(db_path);
  EXPECT_THAT(problems, ::testing::Contains(::testing::HasSubstr(
                            "history row of a VM that does not exist")));
  EXPECT_THAT(problems, ::testing::Contains(
                            ::testing::HasSubstr("gap in the event sequence")));
}

}  // namespace
}  // namespace hvtest
