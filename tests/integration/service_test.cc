// vmms as a service, with real processes: sd_notify (READY=1 only once the
// socket answers, STOPPING=1 on SIGTERM), grpc.health.v1, and
// --keep-workers-on-exit (a SIGTERMed vmms leaves its workers to the next).
#include <google/protobuf/empty.pb.h>
#include <google/protobuf/wrappers.pb.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/support/proto_buffer_reader.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/harness/process.h"
#include "tests/harness/vmms_instance.h"
#include "tests/kvmbox/kvmbox.h"

namespace hvtest {
namespace {

using ::testing::HasSubstr;

// grpc.health.v1.Health/Check with service "" (the whole server). The health
// messages are wire-compatible with well-known types: an empty
// HealthCheckRequest is an Empty, and HealthCheckResponse{status = 1} is an
// Int32Value (field 1, varint). Returns the status (1 = SERVING), or -1 with
// the error in `error`.
int HealthCheck(const std::string& socket_path, std::string* error) {
  auto channel = grpc::CreateChannel("unix:" + socket_path,
                                     grpc::InsecureChannelCredentials());
  grpc::TemplatedGenericStub<google::protobuf::Empty,
                             google::protobuf::Int32Value>
      stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(5));
  google::protobuf::Empty request;
  google::protobuf::Int32Value response;
  grpc::Status status;
  absl::Notification done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                 &request, &response, [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  if (!status.ok()) {
    *error = absl::StrCat(status.error_code(), ": ", status.error_message());
    return -1;
  }
  return response.value();
}

// A unix datagram socket this test owns, standing in for systemd's
// NOTIFY_SOCKET.
class NotifySocket {
 public:
  explicit NotifySocket(std::string path) : path_(std::move(path)) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    bound_ = fd_ >= 0 &&
             bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~NotifySocket() {
    if (fd_ >= 0) close(fd_);
    unlink(path_.c_str());
  }
  bool bound() const { return bound_; }
  const std::string& path() const { return path_; }

  // The next datagram, or "" after `timeout`.
  std::string Receive(absl::Duration timeout) {
    timeval tv = absl::ToTimeval(timeout);
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    return n > 0 ? std::string(buf, n) : std::string();
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool bound_ = false;
};

TEST(SdNotifyTest, ReadyOnlyOnceTheSocketAnswersAndStoppingOnSigterm) {
  TempDir dir;
  NotifySocket notify(dir.path() + "/notify");
  ASSERT_TRUE(notify.bound()) << std::strerror(errno);
  const std::string state_dir = dir.path() + "/state";
  const std::string socket_path = state_dir + "/vmms.sock";
  absl::StatusOr<ChildProcess> vmms = ChildProcess::Start(
      {Runfile("vmms/vmms"), "--state-dir", state_dir, "--vmwp",
       Runfile("vmwp/vmwp")},
      dir.path() + "/vmms.log", {"NOTIFY_SOCKET=" + notify.path()});
  ASSERT_TRUE(vmms.ok()) << vmms.status();

  std::vector<std::string> messages;
  bool ready = false;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (!ready && absl::Now() < deadline) {
    std::string message = notify.Receive(absl::Seconds(1));
    if (message.empty()) continue;
    messages.push_back(message);
    ready = absl::StrContains(message, "READY=1");
  }
  ASSERT_TRUE(ready) << "no READY=1; log:\n"
                     << ReadFileOrEmpty(dir.path() + "/vmms.log");
  // At once, without retrying: the socket answers the moment READY=1 arrives,
  // both the public API and the health service.
  std::string error;
  EXPECT_EQ(HealthCheck(socket_path, &error), 1) << error;
  absl::StatusOr<CommandResult> list =
      RunCommand({Runfile("cli/vmctl"), "--socket", socket_path, "list"}, {},
                 absl::Seconds(10));
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->exit_code, 0) << list->err;
  EXPECT_THAT(messages.back(), HasSubstr("STATUS=serving on unix:"));
  // Earlier messages (STATUS only) did not claim readiness.
  for (size_t i = 0; i + 1 < messages.size(); ++i)
    EXPECT_THAT(messages[i], ::testing::Not(HasSubstr("READY=1")));

  vmms->Kill(SIGTERM);
  std::string stopping = notify.Receive(absl::Seconds(10));
  EXPECT_THAT(stopping, HasSubstr("STOPPING=1"));
  absl::StatusOr<int> status = vmms->Wait(absl::Seconds(15));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
}

TEST(SdNotifyTest, HarmlessWithoutNotifySocket) {
  TempDir dir;
  VmmsInstance vmms(dir.path());
  ASSERT_TRUE(vmms.Start().ok()) << vmms.Log();
  std::string error;
  EXPECT_EQ(HealthCheck(vmms.socket_path(), &error), 1) << error;
  EXPECT_THAT(vmms.Log(), ::testing::Not(HasSubstr("sd_notify")));
  EXPECT_TRUE(vmms.Terminate().ok());
}

class KeepWorkersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access("/dev/kvm", R_OK | W_OK) != 0)
      GTEST_SKIP() << "needs read/write access to /dev/kvm";
  }
  void TearDown() override {
    for (pid_t pid : leftover_) kill(pid, SIGKILL);
  }

  static nlohmann::json Show(VmmsInstance& vmms, const std::string& name) {
    absl::StatusOr<CommandResult> r = vmms.Vmctl({"--json", "show", name});
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return {};
    EXPECT_EQ(r->exit_code, 0) << r->err;
    return nlohmann::json::parse(r->out, nullptr, false);
  }

  static void CreateAndStart(VmmsInstance& vmms, const std::string& name) {
    absl::StatusOr<CommandResult> create =
        vmms.Vmctl({"create", name, "--kernel", Runfile("guest/spin.elf"),
                    "--memory", "64"});
    ASSERT_TRUE(create.ok() && create->exit_code == 0)
        << (create.ok() ? create->err : create.status().ToString());
    absl::StatusOr<CommandResult> start = vmms.Vmctl({"start", name});
    ASSERT_TRUE(start.ok() && start->exit_code == 0)
        << (start.ok() ? start->err : start.status().ToString());
  }

  TempDir dir_;
  std::vector<pid_t> leftover_;
};

TEST_F(KeepWorkersTest, SigtermLeavesWorkersForTheNextVmms) {
  if (kvmbox::InsideKvmbox()) {
    GTEST_SKIP() << "vmms gives a reattached worker 2 s to answer GetStatus "
                    "(worker_reattach.cc); under nested TCG (kvmbox) the "
                    "emulated worker can take longer and is killed as hung";
  }
  pid_t pid = 0;
  {
    VmmsInstance first(dir_.path(), {"--keep-workers-on-exit"});
    ASSERT_TRUE(first.Start().ok()) << first.Log();
    CreateAndStart(first, "survivor");
    pid = std::stoi(Show(first, "survivor").value("workerPid", "0"));
    ASSERT_GT(pid, 0);
    leftover_.push_back(pid);
    ASSERT_TRUE(first.Terminate().ok());
    EXPECT_THAT(first.Log(), HasSubstr("leaving workers running"));
  }
  EXPECT_EQ(kill(pid, 0), 0) << "worker " << pid << " died with vmms";

  VmmsInstance second(dir_.path(), {"--keep-workers-on-exit"});
  ASSERT_TRUE(second.Start().ok()) << second.Log();
  nlohmann::json vm = Show(second, "survivor");
  EXPECT_EQ(vm.value("state", ""), "VM_STATE_RUNNING") << vm.dump();
  EXPECT_EQ(vm.value("workerPid", ""), std::to_string(pid)) << vm.dump();
  // Still controllable by the new vmms.
  absl::StatusOr<CommandResult> stop = second.Vmctl({"stop", "survivor"});
  ASSERT_TRUE(stop.ok()) << stop.status();
  EXPECT_EQ(stop->exit_code, 0) << stop->err;
  EXPECT_EQ(Show(second, "survivor").value("state", ""), "VM_STATE_OFF");
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (kill(pid, 0) == 0 && absl::Now() < deadline)
    absl::SleepFor(absl::Milliseconds(10));
  EXPECT_NE(kill(pid, 0), 0) << "worker " << pid << " outlived its stop";
}

TEST_F(KeepWorkersTest, DefaultSigtermStopsWorkers) {
  VmmsInstance vmms(dir_.path());
  ASSERT_TRUE(vmms.Start().ok()) << vmms.Log();
  CreateAndStart(vmms, "stopped");
  const pid_t pid = std::stoi(Show(vmms, "stopped").value("workerPid", "0"));
  ASSERT_GT(pid, 0);
  leftover_.push_back(pid);
  ASSERT_TRUE(vmms.Terminate().ok());
  EXPECT_NE(kill(pid, 0), 0) << "worker " << pid << " outlived vmms";
}

}  // namespace
}  // namespace hvtest
