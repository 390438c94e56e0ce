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
        WorkerServiceImpl::Hooks{.stop = [this] { stops_++; },
                                 .running = [] { return true; }});
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
  ConsoleRing ring_{1024};
  std::atomic<int> stops_{0};
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

}  // namespace
}  // namespace vmwp
