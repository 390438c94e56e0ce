// Runs the real vmwp binary the way vmms does (a serialized WorkerConfig, a
// ready pipe) against the guest/ programs, and checks the exit report, the
// console log and the worker service.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proto/hvstack/internal/worker.grpc.pb.h"
#include "tests/kvmbox/kvmbox.h"

extern char** environ;

namespace {

using ::hvstack::internal::WorkerConfig;
using ::hvstack::internal::WorkerExitReport;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

std::string Runfile(const std::string& path) {
  return absl::StrCat(std::getenv("TEST_SRCDIR"), "/hvstack/", path);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool HaveKvm() { return ::access("/dev/kvm", R_OK | W_OK) == 0; }

struct Result {
  int exit_code = -1;
  bool ready = false;  // one byte arrived on the ready pipe
  std::optional<WorkerExitReport> report;
};

class VmwpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Unix socket paths must stay under 108 bytes: TEST_TMPDIR can be too deep.
    char dir[] = "/tmp/vmwptestXXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    config_.set_vm_name("test-vm");
    config_.set_vm_uuid("00000000-0000-0000-0000-000000000001");
    config_.set_vcpus(1);
    config_.set_memory_mib(64);
    config_.set_kernel_path(Runfile("guest/hello.elf"));
    config_.set_cmdline("console=ttyS0 hvstack.test=1");
    config_.set_runtime_dir(dir_);
    config_.set_socket_path(dir_ + "/worker.sock");
    config_.set_kvm_fd(-1);
    config_.set_kvm_device_path("/dev/kvm");
  }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (!HasFailure()) {
      std::string cmd = "rm -rf " + dir_;
      (void)!std::system(cmd.c_str());
    }
  }

  std::string ConfigPath() const { return dir_ + "/worker_config.pb"; }

  // Starts vmwp with the ready pipe's write end as descriptor 4, like vmms.
  void Start() {
    {
      std::ofstream out(ConfigPath(), std::ios::binary);
      ASSERT_TRUE(config_.SerializeToOstream(&out));
    }
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    ready_read_ = fds[0];
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 4);
    const std::string binary = Runfile("vmwp/vmwp");
    const std::string config_flag = "--config=" + ConfigPath();
    char* argv[] = {const_cast<char*>(binary.c_str()),
                    const_cast<char*>(config_flag.c_str()),
                    const_cast<char*>("--ready-fd=4"), nullptr};
    ASSERT_EQ(
        posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv, environ),
        0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
  }

  // Waits for the ready byte (true) or EOF (false).
  bool WaitReady() {
    pollfd p = {ready_read_, POLLIN, 0};
    const int timeout_ms = static_cast<int>(
        absl::ToInt64Milliseconds(kvmbox::Scaled(absl::Seconds(30))));
    if (::poll(&p, 1, timeout_ms) != 1) return false;
    char byte;
    return ::read(ready_read_, &byte, 1) == 1;
  }

  Result Wait(absl::Duration timeout = absl::Seconds(60)) {
    Result result;
    if (!ready_checked_) result.ready = WaitReady();
    ::close(ready_read_);
    const absl::Time deadline = absl::Now() + kvmbox::Scaled(timeout);
    int status = 0;
    while (true) {
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) break;
      if (absl::Now() > deadline) {
        ADD_FAILURE() << "vmwp did not exit in time";
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    pid_ = -1;
    if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
    std::ifstream in(dir_ + "/exit_report.pb", std::ios::binary);
    if (in) {
      WorkerExitReport report;
      if (report.ParseFromIstream(&in)) result.report = report;
    }
    return result;
  }

  Result Run() {
    Start();
    return Wait();
  }

  std::string dir_;
  WorkerConfig config_;
  pid_t pid_ = -1;
  int ready_read_ = -1;
  bool ready_checked_ = false;
};

TEST_F(VmwpTest, HelloPowersOff) {
  if (!HaveKvm()) GTEST_SKIP() << "no usable /dev/kvm";
  Result r = Run();
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(r.ready);
  ASSERT_TRUE(r.report.has_value());
  EXPECT_EQ(r.report->reason(), WorkerExitReport::GUEST_POWER_OFF)
      << r.report->DebugString();
  const std::string console = ReadFile(dir_ + "/console.log");
  EXPECT_THAT(console, HasSubstr("hvstack hello guest"));
  EXPECT_THAT(console, HasSubstr("command line: console=ttyS0 hvstack.test=1"));
  EXPECT_THAT(ReadFile(dir_ + "/worker.log"), HasSubstr("GUEST_POWER_OFF"));
  EXPECT_NE(::access((dir_ + "/exit_report.pb.tmp").c_str(), F_OK), 0);
}

TEST_F(VmwpTest, InheritedKvmDescriptor) {
  if (!HaveKvm()) GTEST_SKIP() << "no usable /dev/kvm";
  // vmms hands the worker an open /dev/kvm at descriptor 3.
  const int kvm = ::open("/dev/kvm", O_RDWR);
  ASSERT_GE(kvm, 0);
  ASSERT_EQ(::dup2(kvm, 3), 3);  // not close-on-exec: inherited by the child
  config_.set_kvm_fd(3);
  config_.set_kvm_device_path("/nonexistent");
  Result r = Run();
  ::close(3);
  ::close(kvm);
  ASSERT_TRUE(r.report.has_value());
  EXPECT_EQ(r.report->reason(), WorkerExitReport::GUEST_POWER_OFF)
      << r.report->DebugString();
}

TEST_F(VmwpTest, BadInstructionCrashesWithBytes) {
  if (!HaveKvm()) GTEST_SKIP() << "no usable /dev/kvm";
  config_.set_kernel_path(Runfile("guest/bad_instruction.elf"));
  Result r = Run();
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(r.ready);
  ASSERT_TRUE(r.report.has_value());
  EXPECT_EQ(r.report->reason(), WorkerExitReport::GUEST_CRASHED)
      << r.report->DebugString();
  // On kvm_pvm the emulator rejects lock cmpxchg16b (f0 48 0f c7); elsewhere
  // the guest then takes #UD and jumps into unbacked MMIO (nested KVM on an
  // emulated AMD CPU, whose emulation failure there has no bytes to show).
  // Either way vid names the instruction bytes or the fault.
  EXPECT_THAT(r.report->detail(),
              MatchesRegex(".*(bytes [0-9a-f]{2}( [0-9a-f]{2})*|rip=0x).*"));
  if (r.report->detail().find("emulation failure") != std::string::npos &&
      r.report->detail().find("bytes none") == std::string::npos) {
    EXPECT_THAT(r.report->detail(), HasSubstr("f0 48 0f c7"));
  }
  EXPECT_THAT(ReadFile(dir_ + "/console.log"),
              HasSubstr("bad_instruction: executing"));
}

TEST_F(VmwpTest, MissingKernelIsInvalidArgument) {
  config_.set_kernel_path(dir_ + "/no-such-kernel");
  Result r = Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_FALSE(r.ready)
      << "a worker that failed to start must not report ready";
  ASSERT_TRUE(r.report.has_value());
  EXPECT_EQ(r.report->reason(), WorkerExitReport::WORKER_ERROR);
  EXPECT_EQ(r.report->status_code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(r.report->detail(),
            "kernel " + dir_ +
                "/no-such-kernel: cannot open: No such file or directory");
}

TEST_F(VmwpTest, LogsTheBootLayoutAndE820MapInLinuxFormat) {
  if (!HaveKvm()) GTEST_SKIP() << "no usable /dev/kvm";
  Result r = Run();
  ASSERT_TRUE(r.report.has_value());
  const std::string log = ReadFile(dir_ + "/worker.log");
  EXPECT_THAT(log, HasSubstr("ELF64 kernel: 64-bit entry 0x100000, zero page "
                             "0x7000"));
  EXPECT_THAT(log, HasSubstr("RSDP 0xe0000"));
  // Lines a test can look for verbatim in a Linux guest's console.
  EXPECT_THAT(log, HasSubstr("BIOS-e820: [mem 0x0000000000000000-"
                             "0x000000000000efff] reserved"));
  EXPECT_THAT(log, HasSubstr("BIOS-e820: [mem 0x00000000000e0000-"
                             "0x00000000000e0fff] ACPI data"));
  EXPECT_THAT(log, HasSubstr("BIOS-e820: [mem 0x0000000000100000-"));
}

TEST_F(VmwpTest, MissingInitrdIsInvalidArgument) {
  if (!HaveKvm()) GTEST_SKIP() << "no usable /dev/kvm";
  config_.set_initrd_path(dir_ + "/no-such-initrd.gz");
  Result r = Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_FALSE(r.ready);
  ASSERT_TRUE(r.report.has_value());
  EXPECT_EQ(r.report->reason(), WorkerExitReport::WORKER_ERROR);
  EXPECT_EQ(r.report->status_code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(r.report->detail(),
              HasSubstr("initrd " + dir_ + "/no-such-initrd.gz: cannot open"));
}

TEST_F(VmwpTest, NotAKernelIsInvalidArgument) {
  config_.set_kernel_path(ConfigPath());  // any non-ELF file
  Result r = Run();
  ASSERT_TRUE(r.report.has_value());
  EXPECT_EQ(r.report->status_code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(r.report->detail(), HasSubstr("not an ELF file (bad magic)"));
}

TEST_F(VmwpTest, UnusableKvmIsFailedPrecondition) {
  config_.set_kvm_device_path("/dev/null");
  Result r = Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_FALSE(r.ready);
  ASSERT_TRUE(r.report.has_value());
  EXPECT_EQ(r.report->reason(), WorkerExitReport::WORKER_ERROR);
  EXPECT_EQ(r.report->status_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition))
      << r.report->DebugString();
  EXPECT_THAT(r.report->detail(), HasSubstr("/dev/null"));
}

TEST_F(VmwpTest, UnusableInheritedKvmNamesTheDevice) {
  const int null_fd = ::open("/dev/null", O_RDWR);
  ASSERT_GE(null_fd, 0);
  ASSERT_EQ(::dup2(null_fd, 3), 3);
  config_.set_kvm_fd(3);
  Result r = Run();
  ::close(3);
  ::close(null_fd);
  ASSERT_TRUE(r.report.has_value());
  EXPECT_EQ(r.report->status_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(r.report->detail(), HasSubstr("/dev/null (inherited fd 3)"));
}

TEST_F(VmwpTest, BadConfigIsReportedNextToIt) {
  {
    std::ofstream out(ConfigPath(), std::ios::binary);
    out << "\xff\xff\xff garbage";
  }
  const std::string binary = Runfile("vmwp/vmwp");
  const std::string cmd = binary + " --config=" + ConfigPath() + " 2>/dev/null";
  const int status = std::system(cmd.c_str());
  EXPECT_EQ(WEXITSTATUS(status), 1);
  WorkerExitReport report;
  std::ifstream in(dir_ + "/exit_report.pb", std::ios::binary);
  ASSERT_TRUE(report.ParseFromIstream(&in));
  EXPECT_EQ(report.reason(), WorkerExitReport::WORKER_ERROR);
  EXPECT_EQ(report.status_code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
}

TEST_F(VmwpTest, OddMemoryIsInvalidArgument) {
  config_.set_memory_mib(3);
  Result r = Run();
  ASSERT_TRUE(r.report.has_value());
  EXPECT_EQ(r.report->status_code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(r.report->detail(), HasSubstr("memory_mib 3"));
}

TEST_F(VmwpTest, ServiceStatusConsoleAndStop) {
  if (!HaveKvm()) GTEST_SKIP() << "no usable /dev/kvm";
  config_.set_kernel_path(Runfile("guest/spin.elf"));
  Start();
  ASSERT_TRUE(WaitReady());
  ready_checked_ = true;
  auto stub = hvstack::internal::WorkerService::NewStub(grpc::CreateChannel(
      "unix:" + config_.socket_path(), grpc::InsecureChannelCredentials()));

  // Follow the console until the spin guest's marker shows up.
  grpc::ClientContext stream_ctx;
  hvstack::internal::ConsoleRequest request;
  request.set_follow(true);
  auto reader = stub->StreamConsole(&stream_ctx, request);
  std::string console;
  hvstack::internal::ConsoleData data;
  while (console.find("spinning forever") == std::string::npos &&
         reader->Read(&data)) {
    console += data.data();
  }
  EXPECT_THAT(console, HasSubstr("spin: spinning forever"));

  grpc::ClientContext status_ctx;
  hvstack::internal::WorkerStatus status;
  ASSERT_TRUE(stub->GetStatus(&status_ctx, {}, &status).ok());
  EXPECT_TRUE(status.running());
  EXPECT_EQ(status.vm_uuid(), config_.vm_uuid());
  EXPECT_GE(status.console_bytes(), console.size());

  grpc::ClientContext stop_ctx;
  hvstack::internal::StopResponse stop_response;
  ASSERT_TRUE(stub->Stop(&stop_ctx, {}, &stop_response).ok());
  // The follow stream ends when the VM does.
  while (reader->Read(&data)) {
  }
  EXPECT_TRUE(reader->Finish().ok());

  const absl::Time stopped = absl::Now();
  Result r = Wait();
  EXPECT_LT(absl::Now() - stopped, kvmbox::Scaled(absl::Seconds(1)))
      << "the worker exits promptly after Stop";
  EXPECT_EQ(r.exit_code, 0);
  ASSERT_TRUE(r.report.has_value());
  EXPECT_EQ(r.report->reason(), WorkerExitReport::STOP_REQUESTED)
      << r.report->DebugString();
}

// An enlightened worker whose guest never connects to VMBus (the spin guest
// ignores CPUID): the integration status says so, and the shutdown and KVP
// calls fail with FAILED_PRECONDITION naming what is missing; an
// unenlightened worker refuses them too. The guest-facing half is
// tests/integration/enlightened_test (guest/enlightened).
TEST_F(VmwpTest, EnlightenedWorkerWithoutGuestIntegration) {
  if (!HaveKvm()) GTEST_SKIP() << "no usable /dev/kvm";
  config_.set_kernel_path(Runfile("guest/spin.elf"));
  config_.set_enlightened(true);
  Start();
  ASSERT_TRUE(WaitReady());
  ready_checked_ = true;
  auto stub = hvstack::internal::WorkerService::NewStub(grpc::CreateChannel(
      "unix:" + config_.socket_path(), grpc::InsecureChannelCredentials()));

  grpc::ClientContext status_ctx;
  hvstack::internal::WorkerStatus status;
  ASSERT_TRUE(stub->GetStatus(&status_ctx, {}, &status).ok());
  const hvstack::internal::GuestIntegration& gi = status.integration();
  EXPECT_TRUE(gi.enlightened());
  EXPECT_EQ(gi.vmbus_version(), 0u);
  EXPECT_EQ(gi.heartbeat(),
            hvstack::internal::GuestIntegration::HEARTBEAT_NO_CONTACT);
  ASSERT_EQ(gi.channels_size(), 4);
  EXPECT_EQ(gi.channels(0).name(), "heartbeat");
  EXPECT_FALSE(gi.channels(1).open());

  grpc::ClientContext shutdown_ctx;
  hvstack::internal::ShutdownGuestRequest shutdown;
  shutdown.set_reason("test");
  hvstack::internal::ShutdownGuestResponse shutdown_response;
  grpc::Status s =
      stub->ShutdownGuest(&shutdown_ctx, shutdown, &shutdown_response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("guest offers no shutdown channel"));

  grpc::ClientContext kvp_ctx;
  hvstack::internal::KvpGetRequest get;
  get.set_key("OSName");
  hvstack::internal::KvpGetResponse got;
  s = stub->GetKvp(&kvp_ctx, get, &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("no KVP channel"));

  grpc::ClientContext stop_ctx;
  hvstack::internal::StopResponse stop_response;
  ASSERT_TRUE(stub->Stop(&stop_ctx, {}, &stop_response).ok());
  Result r = Wait();
  ASSERT_TRUE(r.report.has_value());
  EXPECT_EQ(r.report->reason(), WorkerExitReport::STOP_REQUESTED);
  const std::string log = ReadFile(dir_ + "/worker.log");
  EXPECT_THAT(log, HasSubstr("enlightened"));
  EXPECT_THAT(log, HasSubstr("hyperv: "));
}

// The whole enlightened path in the real worker: guest/enlightened connects to
// VMBus, opens the four IC channels and answers heartbeats; the host reads its
// intrinsic KVP items, sets and reads back a key, lists the external pool,
// and shuts the guest down through the shutdown IC; the exit report names the
// reason.
TEST_F(VmwpTest, EnlightenedGuestHeartbeatKvpAndShutdown) {
  if (!HaveKvm()) GTEST_SKIP() << "no usable /dev/kvm";
  config_.set_kernel_path(Runfile("guest/enlightened.elf"));
  config_.set_enlightened(true);
  Start();
  ASSERT_TRUE(WaitReady());
  ready_checked_ = true;
  const absl::Time ready = absl::Now();
  auto stub = hvstack::internal::WorkerService::NewStub(grpc::CreateChannel(
      "unix:" + config_.socket_path(), grpc::InsecureChannelCredentials()));

  hvstack::internal::WorkerStatus status;
  while (absl::Now() - ready < kvmbox::Scaled(absl::Seconds(30))) {
    grpc::ClientContext ctx;
    status.Clear();
    ASSERT_TRUE(stub->GetStatus(&ctx, {}, &status).ok());
    if (status.integration().heartbeat() ==
            hvstack::internal::GuestIntegration::HEARTBEAT_OK &&
        status.integration().intrinsic().contains("OSName")) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  const hvstack::internal::GuestIntegration& gi = status.integration();
  ASSERT_EQ(gi.heartbeat(), hvstack::internal::GuestIntegration::HEARTBEAT_OK)
      << gi.DebugString() << ReadFile(dir_ + "/console.log");
  std::cerr << "heartbeat OK " << absl::Now() - ready << " after ready\n";
  EXPECT_GE(gi.heartbeat_sequence(), 1u);
  EXPECT_GT(gi.last_heartbeat_us(), 0);
  EXPECT_EQ(gi.vmbus_version(), (5u << 16) | 3);
  for (const auto& c : gi.channels()) {
    EXPECT_TRUE(c.open() && c.negotiated()) << c.name();
  }
  EXPECT_EQ(gi.intrinsic().at("OSName"), "UnixHv");

  {
    grpc::ClientContext ctx;
    hvstack::internal::KvpSetRequest set;
    set.set_pool(0);
    set.set_key("role");
    set.set_value("web");
    hvstack::internal::KvpSetResponse r;
    grpc::Status s = stub->SetKvp(&ctx, set, &r);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  {
    grpc::ClientContext ctx;
    hvstack::internal::KvpGetRequest get;
    get.set_pool(0);
    get.set_key("role");
    hvstack::internal::KvpGetResponse r;
    grpc::Status s = stub->GetKvp(&ctx, get, &r);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(r.value(), "web");
  }
  {
    grpc::ClientContext ctx;
    hvstack::internal::KvpGetRequest get;
    get.set_pool(0);
    get.set_key("no-such-key");
    hvstack::internal::KvpGetResponse r;
    EXPECT_EQ(stub->GetKvp(&ctx, get, &r).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    hvstack::internal::KvpGetRequest get;
    get.set_pool(9);
    hvstack::internal::KvpGetResponse r;
    EXPECT_EQ(stub->GetKvp(&ctx, get, &r).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    hvstack::internal::KvpListRequest list;
    list.set_pool(2);
    hvstack::internal::KvpListResponse r;
    grpc::Status s = stub->ListKvp(&ctx, list, &r);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(r.items().at("FullyQualifiedDomainName"), "enlightened.unixhv");
  }
  {
    grpc::ClientContext ctx;
    status.Clear();
    ASSERT_TRUE(stub->GetStatus(&ctx, {}, &status).ok());
    EXPECT_GE(status.integration().time_samples_answered(), 1u);
  }

  // Pause and resume: the guest gets a fresh time sample after the resume.
  const uint64_t samples = status.integration().time_samples_answered();
  {
    grpc::ClientContext pause_ctx;
    hvstack::internal::PauseResponse paused;
    ASSERT_TRUE(stub->Pause(&pause_ctx, {}, &paused).ok());
    grpc::ClientContext resume_ctx;
    hvstack::internal::ResumeResponse resumed;
    ASSERT_TRUE(stub->Resume(&resume_ctx, {}, &resumed).ok());
    const absl::Time deadline = absl::Now() + kvmbox::Scaled(absl::Seconds(10));
    while (absl::Now() < deadline) {
      grpc::ClientContext ctx;
      status.Clear();
      ASSERT_TRUE(stub->GetStatus(&ctx, {}, &status).ok());
      if (status.integration().time_samples_answered() > samples) break;
      absl::SleepFor(absl::Milliseconds(10));
    }
    EXPECT_EQ(status.integration().time_samples_answered(), samples + 1);
  }

  grpc::ClientContext shutdown_ctx;
  hvstack::internal::ShutdownGuestRequest shutdown;
  shutdown.set_reason("maintenance");
  hvstack::internal::ShutdownGuestResponse shutdown_response;
  grpc::Status s =
      stub->ShutdownGuest(&shutdown_ctx, shutdown, &shutdown_response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  Result r = Wait();
  ASSERT_TRUE(r.report.has_value());
  EXPECT_EQ(r.report->reason(), WorkerExitReport::GUEST_POWER_OFF)
      << r.report->DebugString();
  EXPECT_EQ(r.report->detail(), "guest shut down: maintenance");
  EXPECT_THAT(ReadFile(dir_ + "/console.log"), HasSubstr("shutdown requested"));
}

TEST_F(VmwpTest, UnenlightenedWorkerHasNoShutdownChannel) {
  if (!HaveKvm()) GTEST_SKIP() << "no usable /dev/kvm";
  config_.set_kernel_path(Runfile("guest/spin.elf"));
  Start();
  ASSERT_TRUE(WaitReady());
  ready_checked_ = true;
  auto stub = hvstack::internal::WorkerService::NewStub(grpc::CreateChannel(
      "unix:" + config_.socket_path(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext status_ctx;
  hvstack::internal::WorkerStatus status;
  ASSERT_TRUE(stub->GetStatus(&status_ctx, {}, &status).ok());
  EXPECT_FALSE(status.integration().enlightened());
  grpc::ClientContext shutdown_ctx;
  hvstack::internal::ShutdownGuestResponse shutdown_response;
  grpc::Status s = stub->ShutdownGuest(&shutdown_ctx, {}, &shutdown_response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("guest offers no shutdown channel"));
  grpc::ClientContext kvp_ctx;
  hvstack::internal::KvpListResponse list;
  s = stub->ListKvp(&kvp_ctx, {}, &list);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  grpc::ClientContext stop_ctx;
  hvstack::internal::StopResponse stop_response;
  ASSERT_TRUE(stub->Stop(&stop_ctx, {}, &stop_response).ok());
  Wait();
}

TEST_F(VmwpTest, SigtermStops) {
  if (!HaveKvm()) GTEST_SKIP() << "no usable /dev/kvm";
  config_.set_kernel_path(Runfile("guest/spin.elf"));
  Start();
  ASSERT_TRUE(WaitReady());
  ready_checked_ = true;
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  Result r = Wait();
  EXPECT_EQ(r.exit_code, 0);
  ASSERT_TRUE(r.report.has_value());
  EXPECT_EQ(r.report->reason(), WorkerExitReport::STOP_REQUESTED)
      << r.report->DebugString();
}

}  // namespace
