#include "vmwp/service/worker_service.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <thread>

#include "absl/time/clock.h"

namespace vmwp {
namespace {

using hvstack::internal::ConsoleData;
using hvstack::internal::ConsoleRequest;
using hvstack::internal::WorkerService;

class WorkerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Unix socket paths must stay short: TEST_TMPDIR can be too long for
    // sun_path.
    char dir[] = "/tmp/vmwpsvcXXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    socket_path_ = dir_ + "/worker.sock";
    service_ = std::make_unique<WorkerServiceImpl>(
        "uuid-1", &ring_,
        WorkerServiceImpl::Hooks{
            .stop = [this] { stops_++; },
            .running = [] { return true; },
            .console_input =
                [this](std::string_view bytes) {
                  absl::MutexLock lock(&input_mu_);
                  const size_t n =
                      std::min(bytes.size(), kInputRoom - input_.size());
                  input_.append(bytes.substr(0, n));
                  return n;
                },
            .console_input_dropped = [] { return uint64_t{7}; },
            .nic_status =
                [] {
                  hvstack::internal::WorkerNicStatus nic;
                  nic.set_index(2);
                  nic.set_to_guest_packets(5);
                  (*nic.mutable_drops_by_reason())["to_guest_no_buffer"] = 1;
                  return std::vector<hvstack::internal::WorkerNicStatus>{nic};
                },
            .set_nic_link =
                [this](uint32_t index, bool connected) {
                  if (index != 2) return absl::NotFoundError("no such NIC");
                  link_calls_.push_back(connected);
                  return absl::OkStatus();
                },
            .set_guest_crash_action =
                [this](hvstack::internal::GuestCrashAction action) {
                  crash_action_ = action;
                },
            .last_guest_crash =
                [this]() -> std::optional<hvstack::internal::GuestCrashReport> {
              if (crash_summary_.empty()) return std::nullopt;
              hvstack::internal::GuestCrashReport r;
              r.set_summary(crash_summary_);
              return r;
            },
        },
        &events_);
    auto server = StartWorkerServer(socket_path_, service_.get());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = WorkerService::NewStub(grpc::CreateChannel(
        "unix:" + socket_path_, grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
    ::unlink(socket_path_.c_str());
    ::rmdir(dir_.c_str());
  }

  std::string dir_;
  std::string socket_path_;
  static constexpr size_t kInputRoom = 8;
  ConsoleRing ring_{1024};
  WorkerEventLog events_;
  absl::Mutex input_mu_;
  std::string input_;
  std::atomic<int> stops_{0};
  std::vector<bool> link_calls_;
  std::atomic<hvstack::internal::GuestCrashAction> crash_action_{
      hvstack::internal::GUEST_CRASH_ACTION_UNSPECIFIED};
  std::string crash_summary_;
  std::unique_ptr<WorkerServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<WorkerService::Stub> stub_;
};

TEST_F(WorkerServiceTest, GetStatus) {
  ring_.Append("12345");
  grpc::ClientContext ctx;
  hvstack::internal::WorkerStatus status;
  ASSERT_TRUE(stub_->GetStatus(&ctx, {}, &status).ok());
  EXPECT_EQ(status.vm_uuid(), "uuid-1");
  EXPECT_TRUE(status.running());
  EXPECT_EQ(status.console_bytes(), 5u);
}

TEST_F(WorkerServiceTest, GuestCrashActionAndLastCrash) {
  {
    grpc::ClientContext ctx;
    hvstack::internal::WorkerStatus status;
    ASSERT_TRUE(stub_->GetStatus(&ctx, {}, &status).ok());
    EXPECT_FALSE(status.has_last_guest_crash());
  }
  crash_summary_ = "Kernel panic - not syncing: test";
  {
    grpc::ClientContext ctx;
    hvstack::internal::WorkerStatus status;
    ASSERT_TRUE(stub_->GetStatus(&ctx, {}, &status).ok());
    EXPECT_EQ(status.last_guest_crash().summary(), crash_summary_);
  }
  {
    grpc::ClientContext ctx;
    hvstack::internal::SetGuestCrashActionRequest request;
    request.set_action(hvstack::internal::GUEST_CRASH_ACTION_PAUSE);
    hvstack::internal::SetGuestCrashActionResponse response;
    ASSERT_TRUE(stub_->SetGuestCrashAction(&ctx, request, &response).ok());
    EXPECT_EQ(crash_action_.load(),
              hvstack::internal::GUEST_CRASH_ACTION_PAUSE);
  }
  {
    grpc::ClientContext ctx;
    hvstack::internal::SetGuestCrashActionRequest request;
    request.set_action(static_cast<hvstack::internal::GuestCrashAction>(42));
    hvstack::internal::SetGuestCrashActionResponse response;
    grpc::Status s = stub_->SetGuestCrashAction(&ctx, request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(crash_action_.load(),
              hvstack::internal::GUEST_CRASH_ACTION_PAUSE);
  }
}

TEST_F(WorkerServiceTest, SocketIsOwnerOnly) {
  struct stat st;
  ASSERT_EQ(::stat(socket_path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(WorkerServiceTest, StopCallsHook) {
  grpc::ClientContext ctx;
  hvstack::internal::StopResponse response;
  ASSERT_TRUE(stub_->Stop(&ctx, {}, &response).ok());
  EXPECT_EQ(stops_.load(), 1);
}

TEST_F(WorkerServiceTest, StreamWithoutFollowReturnsRingContents) {
  ring_.Append("boot log\n");
  grpc::ClientContext ctx;
  ConsoleRequest request;
  auto reader = stub_->StreamConsole(&ctx, request);
  std::string got;
  ConsoleData data;
  while (reader->Read(&data)) got += data.data();
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(got, "boot log\n");
}

TEST_F(WorkerServiceTest, FollowSeesNewOutputUntilClose) {
  ring_.Append("old ");
  std::thread guest([&] {
    absl::SleepFor(absl::Milliseconds(50));
    ring_.Append("new");
    absl::SleepFor(absl::Milliseconds(50));
    ring_.Close();
  });
  grpc::ClientContext ctx;
  ConsoleRequest request;
  request.set_follow(true);
  auto reader = stub_->StreamConsole(&ctx, request);
  std::string got;
  ConsoleData data;
  while (reader->Read(&data)) got += data.data();
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(got, "old new");
  guest.join();
}

TEST_F(WorkerServiceTest, FollowEndsWhenClientCancels) {
  grpc::ClientContext ctx;
  ConsoleRequest request;
  request.set_follow(true);
  auto reader = stub_->StreamConsole(&ctx, request);
  ring_.Append("x");
  ConsoleData data;
  ASSERT_TRUE(reader->Read(&data));
  EXPECT_EQ(data.data(), "x");
  ctx.TryCancel();
  while (reader->Read(&data)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The server side must notice too: shutdown would hang on a stuck handler.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  server_.reset();
}

TEST(StartWorkerServerTest, RejectsLongSocketPath) {
  WorkerServiceImpl service("u", nullptr, {});
  auto server = StartWorkerServer("/tmp/" + std::string(200, 'x'), &service);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace vmwp

namespace vmwp {
namespace {

TEST_F(WorkerServiceTest, ShutdownIsPromptAfterStreamsEnd) {
  grpc::ClientContext ctx;
  ConsoleRequest request;
  request.set_follow(true);
  auto reader = stub_->StreamConsole(&ctx, request);
  ring_.Append("x");
  ConsoleData data;
  ASSERT_TRUE(reader->Read(&data));
  grpc::ClientContext stop_ctx;
  hvstack::internal::StopResponse stop_response;
  ASSERT_TRUE(stub_->Stop(&stop_ctx, {}, &stop_response).ok());
  ring_.Close();
  while (reader->Read(&data)) {
  }
  EXPECT_TRUE(reader->Finish().ok());
  const absl::Time start = absl::Now();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  server_.reset();
}

// The worker's exit sequence: an open console input call is cancelled (only
// its client would end it otherwise), and a follower that was sent the last
// output right before its handler returned still receives all of it although
// Shutdown comes at once.
TEST_F(WorkerServiceTest, ExitSequenceDeliversTheLastOutputAndEndsInput) {
  grpc::ClientContext input_ctx;
  hvstack::internal::ConsoleInputSummary summary;
  auto writer = stub_->WriteConsole(&input_ctx, &summary);
  hvstack::internal::ConsoleInput input;
  input.set_data("a");
  ASSERT_TRUE(writer->Write(input));

  grpc::ClientContext follow_ctx;
  ConsoleRequest request;
  request.set_follow(true);
  auto reader = stub_->StreamConsole(&follow_ctx, request);
  ring_.Append("first\r\n");
  ConsoleData data;
  ASSERT_TRUE(reader->Read(&data));
  std::string received = data.data();

  // The guest's last words, then the VM ends.
  // Within the ring (1024 bytes), which holds from "powering off" on.
  const std::string last(990, 'z');
  ring_.Append("powering off\r\n");
  ring_.Append(last);
  ring_.Close();
  ASSERT_TRUE(service_->WaitForStreamsToEnd(absl::Seconds(5)));
  service_->EndInputStreams();
  const absl::Time start = absl::Now();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  std::printf("shutdown took %s\n",
              absl::FormatDuration(absl::Now() - start).c_str());

  while (reader->Read(&data)) received += data.data();
  // The handler returned OK, but gRPC may close the transport as the server
  // stops before the trailing status frame arrives (3 runs in 400 at load 4:
  // UNAVAILABLE "Broken pipe" after every byte had arrived). vmms's console
  // proxy treats a stream that relayed data as ended either way; what must
  // hold is that every byte arrived and the stream ended.
  const grpc::Status finish = reader->Finish();
  EXPECT_TRUE(finish.ok() ||
              finish.error_code() == grpc::StatusCode::UNAVAILABLE)
      << finish.error_code() << ": " << finish.error_message();
  EXPECT_EQ(received.size(), 7 + 14 + last.size());
  EXPECT_EQ(received.substr(0, 21), "first\r\npowering off\r\n");
  EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::CANCELLED);
  server_.reset();
}

TEST_F(WorkerServiceTest, GetStatusReportsDroppedInput) {
  grpc::ClientContext ctx;
  hvstack::internal::WorkerStatus status;
  ASSERT_TRUE(stub_->GetStatus(&ctx, {}, &status).ok());
  EXPECT_EQ(status.vm_uuid(), "uuid-1");
  EXPECT_EQ(status.console_input_dropped(), 7u);
}

TEST_F(WorkerServiceTest, WriteConsoleForwardsInputAndCountsDrops) {
  grpc::ClientContext ctx;
  hvstack::internal::ConsoleInputSummary summary;
  auto writer = stub_->WriteConsole(&ctx, &summary);
  hvstack::internal::ConsoleInput input;
  input.set_data("hello");
  ASSERT_TRUE(writer->Write(input));
  input.set_data(" world");
  ASSERT_TRUE(writer->Write(input));
  ASSERT_TRUE(writer->WritesDone());
  ASSERT_TRUE(writer->Finish().ok());
  EXPECT_EQ(summary.accepted(), 8u);
  EXPECT_EQ(summary.dropped(), 3u);
  absl::MutexLock lock(&input_mu_);
  EXPECT_EQ(input_, "hello wo");
}

TEST_F(WorkerServiceTest, WatchEventsReplaysThenFollowsUntilClosed) {
  hvstack::internal::WorkerEvent event;
  event.mutable_heartbeat()->set_state(
      hvstack::internal::GuestIntegration::HEARTBEAT_OK);
  event.mutable_heartbeat()->set_sequence(1);
  EXPECT_EQ(events_.Publish(event), 1u);

  grpc::ClientContext ctx;
  hvstack::internal::WatchEventsRequest request;
  auto reader = stub_->WatchEvents(&ctx, request);
  hvstack::internal::WorkerEvent got;
  ASSERT_TRUE(reader->Read(&got));
  EXPECT_EQ(got.sequence(), 1u);
  ASSERT_TRUE(got.has_heartbeat());
  EXPECT_EQ(got.heartbeat().state(),
            hvstack::internal::GuestIntegration::HEARTBEAT_OK);
  EXPECT_EQ(got.heartbeat().sequence(), 1u);
  EXPECT_GT(got.time_us(), 0);

  std::thread later([this] {
    absl::SleepFor(absl::Milliseconds(50));
    hvstack::internal::WorkerEvent e;
    e.mutable_heartbeat()->set_state(
        hvstack::internal::GuestIntegration::HEARTBEAT_LOST);
    e.mutable_heartbeat()->set_sequence(1);
    events_.Publish(e);
    events_.Close();
  });
  ASSERT_TRUE(reader->Read(&got));
  EXPECT_EQ(got.sequence(), 2u);
  EXPECT_EQ(got.heartbeat().state(),
            hvstack::internal::GuestIntegration::HEARTBEAT_LOST);
  EXPECT_FALSE(reader->Read(&got)) << "the stream ends when the log closes";
  EXPECT_TRUE(reader->Finish().ok());
  later.join();
  EXPECT_TRUE(service_->WaitForStreamsToEnd(absl::Seconds(5)));
}

TEST_F(WorkerServiceTest, WatchEventsSkipsWhatTheSubscriberHasSeen) {
  for (int i = 0; i < 3; ++i) events_.Publish({});
  events_.Close();
  grpc::ClientContext ctx;
  hvstack::internal::WatchEventsRequest request;
  request.set_after_sequence(2);
  auto reader = stub_->WatchEvents(&ctx, request);
  hvstack::internal::WorkerEvent got;
  ASSERT_TRUE(reader->Read(&got));
  EXPECT_EQ(got.sequence(), 3u);
  EXPECT_FALSE(reader->Read(&got));
}

TEST_F(WorkerServiceTest, NicStatusAndLink) {
  grpc::ClientContext ctx;
  hvstack::internal::WorkerStatus status;
  ASSERT_TRUE(stub_->GetStatus(&ctx, {}, &status).ok());
  ASSERT_EQ(status.nics_size(), 1);
  EXPECT_EQ(status.nics(0).index(), 2u);
  EXPECT_EQ(status.nics(0).to_guest_packets(), 5u);
  EXPECT_EQ(status.nics(0).drops_by_reason().at("to_guest_no_buffer"), 1u);
  hvstack::internal::SetNicLinkRequest request;
  hvstack::internal::SetNicLinkResponse response;
  request.set_index(2);
  request.set_connected(false);
  grpc::ClientContext down;
  ASSERT_TRUE(stub_->SetNicLink(&down, request, &response).ok());
  request.set_index(7);
  grpc::ClientContext missing;
  EXPECT_EQ(stub_->SetNicLink(&missing, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(link_calls_, std::vector<bool>{false});
}

TEST(WorkerEventLogTest, RetainsABoundedNumber) {
  WorkerEventLog log;
  for (size_t i = 0; i < WorkerEventLog::kRetained + 10; ++i) log.Publish({});
  WorkerEventLog::Batch batch = log.WaitAfter(0, absl::Now());
  ASSERT_EQ(batch.events.size(), WorkerEventLog::kRetained);
  EXPECT_EQ(batch.events.front().sequence(), 11u);
  EXPECT_FALSE(batch.closed);
  log.Close();
  EXPECT_EQ(log.Publish({}), 0u);
  EXPECT_TRUE(
      log.WaitAfter(log.last_sequence(), absl::InfiniteFuture()).closed);
}

}  // namespace
}  // namespace vmwp
