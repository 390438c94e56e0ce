#include "vmms/event_stream.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "vmms/sqlite_db.h"
#include "vmms/test_dir.h"
#include "vmms/vm_store.h"

namespace vmms {
namespace {

using hvstack::v1::VmEvent;
using ::testing::HasSubstr;

Vm NewVm(const std::string& name, const std::string& uuid) {
  Vm vm;
  vm.set_name(name);
  vm.set_uuid(uuid);
  vm.mutable_config()->set_vcpus(1);
  vm.mutable_config()->set_memory_mib(64);
  vm.mutable_config()->set_kernel_path("/k");
  return vm;
}

TEST(EventLogTest, EveryChangeAddsOneEventInItsTransaction) {
  testing::TestDir dir;
  auto store = *VmStore::Open(dir.path() + "/vmms.db");
  ASSERT_TRUE(store->Create(NewVm("a", "u-a")).ok());
  ASSERT_TRUE(
      store->SetState("u-a", hvstack::v1::VM_STATE_STARTING, "start").ok());
  ASSERT_TRUE(store->RecordReboot("u-a", "x").status().code() ==
              absl::StatusCode::kFailedPrecondition);  // Not Running: no row.
  ASSERT_TRUE(
      store->SetState("u-a", hvstack::v1::VM_STATE_RUNNING, "ready").ok());
  ASSERT_TRUE(store->RecordReboot("u-a", "guest rebooted").ok());
  ASSERT_TRUE(
      store->SetState("u-a", hvstack::v1::VM_STATE_OFF, "stopped").ok());
  ASSERT_TRUE(store->Delete("u-a").ok());
  // A failed mutation (unknown VM) adds nothing.
  EXPECT_FALSE(store->SetState("nope", hvstack::v1::VM_STATE_OFF, "x").ok());

  auto events = store->ReadEvents(0, 100);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 6u);
  std::vector<VmEvent::Kind> kinds;
  for (size_t i = 0; i < events->size(); ++i) {
    EXPECT_EQ((*events)[i].sequence(), i + 1);
    EXPECT_EQ((*events)[i].vm_name(), "a");
    kinds.push_back((*events)[i].kind());
  }
  EXPECT_THAT(kinds, ::testing::ElementsAre(
                         VmEvent::KIND_CREATED, VmEvent::KIND_STATE_CHANGED,
                         VmEvent::KIND_STATE_CHANGED, VmEvent::KIND_REBOOTED,
                         VmEvent::KIND_STATE_CHANGED, VmEvent::KIND_DELETED));
  EXPECT_EQ((*events)[2].previous_state(), hvstack::v1::VM_STATE_STARTING);
  EXPECT_EQ((*events)[2].state(), hvstack::v1::VM_STATE_RUNNING);
  EXPECT_EQ((*events)[2].reason(), "ready");
}

TEST(EventLogTest, RetentionTrimsOldestAndTrimmedResumeIsOutOfRange) {
  testing::TestDir dir;
  auto store = *VmStore::Open(dir.path() + "/vmms.db", VmStoreOptions{3});
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(
        store->Create(NewVm("v" + std::to_string(i), "u" + std::to_string(i)))
            .ok());
  }
  auto all = store->ReadEvents(0, 100);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ(all->front().sequence(), 4u);
  EXPECT_TRUE(store->ReadEvents(3, 100).ok());
  auto trimmed = store->ReadEvents(2, 100);
  EXPECT_EQ(trimmed.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(trimmed.status().message(), HasSubstr("oldest retained is 4"));
  // Reopening keeps the numbering: sequences are never reused.
  store.reset();
  store = *VmStore::Open(dir.path() + "/vmms.db", VmStoreOptions{3});
  ASSERT_TRUE(store->Create(NewVm("w", "uw")).ok());
  auto after = store->ReadEvents(6, 10);
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(after->size(), 1u);
  EXPECT_EQ(after->front().sequence(), 7u);
}

// A follower racing with writers sees every event exactly once, in order.
TEST(EventStreamTest, FollowerMissesNothingWhileWritersCommit) {
  testing::TestDir dir;
  auto store = *VmStore::Open(dir.path() + "/vmms.db");
  constexpr int kWriters = 4;
  constexpr int kPerWriter = 100;
  constexpr size_t kTotal = kWriters * (kPerWriter + 1);  // + creations.

  absl::Mutex mu;
  std::vector<uint64_t> seen;
  std::atomic<bool> stop{false};
  std::thread follower([&] {
    hvstack::v1::WatchEventsRequest request;
    request.set_follow(true);
    absl::Status s = StreamEvents(
        *store, request, [&] { return stop.load(); },
        [&](const VmEvent& e) {
          absl::MutexLock lock(&mu);
          seen.push_back(e.sequence());
          return true;
        });
    EXPECT_TRUE(s.ok()) << s;
  });
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      std::string uuid = "u" + std::to_string(w);
      ASSERT_TRUE(store->Create(NewVm("vm" + std::to_string(w), uuid)).ok());
      for (int i = 0; i < kPerWriter; ++i) {
        ASSERT_TRUE(store
                        ->SetState(uuid,
                                   i % 2 ? hvstack::v1::VM_STATE_OFF
                                         : hvstack::v1::VM_STATE_STARTING,
                                   "x")
                        .ok());
      }
    });
  }
  for (std::thread& t : writers) t.join();
  for (absl::Time deadline = absl::Now() + absl::Seconds(10);
       absl::Now() < deadline; absl::SleepFor(absl::Milliseconds(5))) {
    absl::MutexLock lock(&mu);
    if (seen.size() >= kTotal) break;
  }
  stop = true;
  store->CloseEventWatchers();
  follower.join();
  absl::MutexLock lock(&mu);
  ASSERT_EQ(seen.size(), kTotal);
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], i + 1);
}

}  // namespace
}  // namespace vmms
