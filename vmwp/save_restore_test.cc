// Save and restore through the real vmwp binary (issue 14), as vmms drives
// them: a running worker gets the two files through its handoff socket and
// WorkerService.SaveState; a fresh worker starts from them
// (WorkerConfig.restore) and the guest goes on from exactly where it was.

#include <fcntl.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "base/fd_handoff.h"
#include "proto/hvstack/internal/worker.grpc.pb.h"
#include "tests/kvmbox/kvmbox.h"

extern char** environ;

namespace {

using ::hvstack::internal::WorkerConfig;
using ::hvstack::internal::WorkerExitReport;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Runfile(const std::string& path) {
  return absl::StrCat(std::getenv("TEST_SRCDIR"), "/hvstack/", path);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Per CPU, the counts //guest:counter printed on complete lines; checks that
// register and memory counts agree.
std::map<uint32_t, std::vector<uint64_t>> Counts(const std::string& out) {
  std::map<uint32_t, std::vector<uint64_t>> counts;
  std::vector<absl::string_view> lines = absl::StrSplit(out, "\r\n");
  lines.pop_back();
  for (absl::string_view line : lines) {
    std::vector<absl::string_view> w = absl::StrSplit(line, ' ');
    if (w.size() != 7 || w[0] != "counter:" || w[1] != "cpu") continue;
    uint32_t cpu;
    uint64_t reg, mem;
    if (!absl::SimpleAtoi(w[2], &cpu) || !absl::SimpleAtoi(w[4], &reg) ||
        !absl::SimpleAtoi(w[6], &mem)) {
      ADD_FAILURE() << "bad line: " << line;
      continue;
    }
    EXPECT_EQ(reg, mem) << line;
    counts[cpu].push_back(reg);
  }
  return counts;
}

struct Worker {
  pid_t pid = -1;
  int ready = -1;
  std::string dir;
};

class SaveRestoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/dev/kvm", R_OK | W_OK) != 0)
      GTEST_SKIP() << "needs /dev/kvm";
    char dir[] = "/tmp/vmwpsaveXXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    config_.set_vm_name("saved-vm");
    config_.set_vm_uuid("00000000-0000-0000-0000-00000000005a");
    config_.set_vcpus(2);
    config_.set_memory_mib(64);
    config_.set_kernel_path(Runfile("guest/counter.elf"));
    config_.set_cmdline("delay=2000");
    config_.set_runtime_dir(dir_);
    config_.set_socket_path(dir_ + "/worker.sock");
    config_.set_handoff_socket_path(dir_ + "/handoff.sock");
    config_.set_kvm_fd(-1);
    config_.set_kvm_device_path("/dev/kvm");
  }
  void TearDown() override {
    for (Worker& w : workers_) {
      if (w.pid > 0) {
        ::kill(w.pid, SIGKILL);
        ::waitpid(w.pid, nullptr, 0);
      }
    }
    if (!HasFailure() && !dir_.empty()) {
      (void)!std::system(("rm -rf " + dir_).c_str());
    }
  }

  // Starts vmwp with `config_`; `inherit` maps descriptors here to numbers in
  // the worker (the restore files).
  Worker& Start(const std::string& name,
                const std::vector<std::pair<int, int>>& inherit = {}) {
    WorkerConfig c = config_;
    c.set_console_log_path(dir_ + "/console.log");
    c.set_exit_report_path(dir_ + "/" + name + ".report");
    const std::string config_path = dir_ + "/" + name + ".pb";
    {
      std::ofstream out(config_path, std::ios::binary);
      EXPECT_TRUE(c.SerializeToOstream(&out));
    }
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 4);
    for (const auto& [from, to] : inherit)
      posix_spawn_file_actions_adddup2(&actions, from, to);
    const std::string binary = Runfile("vmwp/vmwp");
    const std::string flag = "--config=" + config_path;
    char* argv[] = {const_cast<char*>(binary.c_str()),
                    const_cast<char*>(flag.c_str()),
                    const_cast<char*>("--ready-fd=4"), nullptr};
    Worker& w = workers_.emplace_back();
    w.dir = name;
    EXPECT_EQ(
        posix_spawn(&w.pid, binary.c_str(), &actions, nullptr, argv, environ),
        0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    w.ready = fds[0];
    return w;
  }

  bool WaitReady(Worker& w) {
    pollfd p = {w.ready, POLLIN, 0};
    const int ms = static_cast<int>(
        absl::ToInt64Milliseconds(kvmbox::Scaled(absl::Seconds(30))));
    if (::poll(&p, 1, ms) != 1) return false;
    char byte;
    return ::read(w.ready, &byte, 1) == 1;
  }

  std::optional<WorkerExitReport> Wait(Worker& w) {
    int status = 0;
    const absl::Time deadline = absl::Now() + kvmbox::Scaled(absl::Seconds(60));
    while (::waitpid(w.pid, &status, WNOHANG) != w.pid) {
      if (absl::Now() > deadline) {
        ADD_FAILURE() << "vmwp " << w.dir << " did not exit";
        ::kill(w.pid, SIGKILL);
        ::waitpid(w.pid, &status, 0);
        break;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    w.pid = -1;
    std::ifstream in(dir_ + "/" + w.dir + ".report", std::ios::binary);
    WorkerExitReport report;
    if (!in || !report.ParseFromIstream(&in)) return std::nullopt;
    return report;
  }

  // `from`: where in the console log to start looking (output of a later
  // worker only).
  bool WaitForConsole(const std::string& text,
                      absl::Duration timeout = absl::Seconds(60),
                      size_t from = 0) {
    const absl::Time deadline = absl::Now() + kvmbox::Scaled(timeout);
    while (absl::Now() < deadline) {
      if (ReadFile(dir_ + "/console.log").find(text, from) != std::string::npos)
        return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }

  std::unique_ptr<hvstack::internal::WorkerService::Stub> Stub() {
    return hvstack::internal::WorkerService::NewStub(grpc::CreateChannel(
        "unix:" + config_.socket_path(), grpc::InsecureChannelCredentials()));
  }

  // Creates the two files, hands them to the worker and calls SaveState.
  grpc::Status Save(const std::string& name, bool stop_after,
                    hvstack::internal::SaveStateResponse* response,
                    const std::string& token = "save-token") {
    const int state = ::open((dir_ + "/" + name + ".state").c_str(),
                             O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const int memory = ::open((dir_ + "/" + name + ".memory").c_str(),
                              O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    EXPECT_GE(state, 0);
    EXPECT_GE(memory, 0);
    const int fds[] = {state, memory};
    absl::Status sent =
        base::SendFdsTo(config_.handoff_socket_path(), token, fds);
    ::close(state);
    ::close(memory);
    EXPECT_TRUE(sent.ok()) << sent;
    hvstack::internal::SaveStateRequest request;
    request.set_handoff_token(token);
    request.set_stop_after(stop_after);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(absl::ToInt64Milliseconds(
                         kvmbox::Scaled(absl::Seconds(60)))));
    return Stub()->SaveState(&ctx, request, response);
  }

  // Starts a worker from `name`'s files.
  Worker& Restore(const std::string& worker, const std::string& name,
                  bool eager = false,
                  std::vector<std::pair<int, int>> inherit = {}) {
    // Above every target number: posix_spawn's dup2 actions run in order,
    // and a source that is another action's target would be overwritten.
    auto open_high = [](const std::string& path) {
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return fd;
      const int high = ::fcntl(fd, F_DUPFD_CLOEXEC, 100);
      ::close(fd);
      return high;
    };
    const int state = open_high(dir_ + "/" + name + ".state");
    const int memory = open_high(dir_ + "/" + name + ".memory");
    EXPECT_GE(state, 0);
    EXPECT_GE(memory, 0);
    WorkerConfig saved = config_;
    config_.mutable_restore()->set_state_fd(7);
    config_.mutable_restore()->set_memory_fd(8);
    config_.mutable_restore()->set_memory_load(
        eager ? hvstack::internal::RestoreSource::MEMORY_LOAD_EAGER
              : hvstack::internal::RestoreSource::MEMORY_LOAD_MAP);
    config_.set_continue_console_log(true);
    // First: `inherit`'s targets (a disk's 100) may be these sources.
    inherit.insert(inherit.begin(), {{state, 7}, {memory, 8}});
    Worker& w = Start(worker, inherit);
    config_ = saved;
    ::close(state);
    ::close(memory);
    return w;
  }

  void Stop() {
    grpc::ClientContext ctx;
    hvstack::internal::StopResponse r;
    (void)Stub()->Stop(&ctx, {}, &r);
  }

  std::string dir_;
  WorkerConfig config_;
  std::vector<Worker> workers_;
};

// With 2 and 4 vCPUs (the must-show): every CPU's count goes on.
class CounterSaveRestoreTest : public SaveRestoreTest,
                               public ::testing::WithParamInterface<int> {};

TEST_P(CounterSaveRestoreTest, CounterContinuesWithTheNextValueInAFreshWorker) {
  const int vcpus = GetParam();
  config_.set_vcpus(vcpus);
  Worker& a = Start("a");
  ASSERT_TRUE(WaitReady(a));
  ASSERT_TRUE(WaitForConsole(absl::StrCat(vcpus, " CPUs counting")))
      << ReadFile(dir_ + "/console.log");
  for (int cpu = 0; cpu < vcpus; ++cpu)
    ASSERT_TRUE(WaitForConsole(absl::StrCat("cpu ", cpu, " reg 5 ")));
  hvstack::internal::SaveStateResponse saved;
  grpc::Status s = Save("s1", /*stop_after=*/true, &saved);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_GT(saved.memory_pages_written(), 0u);
  EXPECT_LT(saved.memory_pages_written(), saved.memory_pages_total());
  std::optional<WorkerExitReport> ra = Wait(a);
  ASSERT_TRUE(ra.has_value());
  EXPECT_EQ(ra->reason(), WorkerExitReport::SAVED) << ra->DebugString();
  const auto before = Counts(ReadFile(dir_ + "/console.log"));
  ASSERT_EQ(before.size(), static_cast<size_t>(vcpus));

  Worker& b = Restore("b", "s1");
  ASSERT_TRUE(WaitReady(b)) << ReadFile(dir_ + "/worker.log");
  for (const auto& [cpu, values] : before) {
    ASSERT_TRUE(WaitForConsole(
        absl::StrCat("cpu ", cpu, " reg ", values.back() + 5, " ")))
        << "cpu " << cpu << " did not go on";
  }
  {
    grpc::ClientContext ctx;
    hvstack::internal::WorkerStatus status;
    ASSERT_TRUE(Stub()->GetStatus(&ctx, {}, &status).ok());
    EXPECT_TRUE(status.restored());
    EXPECT_GT(status.restore_us(), 0u);
  }
  Stop();
  std::optional<WorkerExitReport> rb = Wait(b);
  ASSERT_TRUE(rb.has_value());
  EXPECT_EQ(rb->reason(), WorkerExitReport::STOP_REQUESTED);
  const std::string console = ReadFile(dir_ + "/console.log");
  EXPECT_EQ(console.find("CPUs counting"), console.rfind("CPUs counting"))
      << "the guest booted again";
  for (const auto& [cpu, values] : Counts(console)) {
    for (size_t i = 0; i < values.size(); ++i) {
      ASSERT_EQ(values[i], i + 1) << "cpu " << cpu << ": no restart, no skip";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Vcpus, CounterSaveRestoreTest, ::testing::Values(2, 4),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return absl::StrCat(info.param, "Vcpus");
                         });

TEST_F(SaveRestoreTest, CheckpointOfARunningVmLetsItGoOnAndRestoresLater) {
  Worker& a = Start("a");
  ASSERT_TRUE(WaitReady(a));
  ASSERT_TRUE(WaitForConsole("cpu 0 reg 5 "));
  hvstack::internal::SaveStateResponse saved;
  grpc::Status s = Save("c1", /*stop_after=*/false, &saved);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const auto at_checkpoint = Counts(ReadFile(dir_ + "/console.log"));
  const uint64_t cpu0 = at_checkpoint.at(0).back();
  // It goes on in the same worker.
  ASSERT_TRUE(WaitForConsole(absl::StrCat("cpu 0 reg ", cpu0 + 5, " ")));
  Stop();
  ASSERT_TRUE(Wait(a).has_value());
  // The checkpoint, restored (eagerly this time), goes on from its own
  // moment: the next line of CPU 0 repeats cpu0 + 1.
  const size_t log_size = ReadFile(dir_ + "/console.log").size();
  Worker& b = Restore("b", "c1", /*eager=*/true);
  ASSERT_TRUE(WaitReady(b)) << ReadFile(dir_ + "/worker.log");
  ASSERT_TRUE(WaitForConsole(absl::StrCat("cpu 0 reg ", cpu0 + 3, " "),
                             absl::Seconds(60), log_size));
  Stop();
  ASSERT_TRUE(Wait(b).has_value());
  const auto after = Counts(ReadFile(dir_ + "/console.log").substr(log_size));
  ASSERT_TRUE(after.contains(0));
  ASSERT_FALSE(after.at(0).empty());
  // The first complete line after the restore may be the rest of one the
  // guest was printing at the checkpoint: either way, no skip.
  EXPECT_LE(after.at(0).front(), cpu0 + 1);
  for (size_t i = 1; i < after.at(0).size(); ++i)
    EXPECT_EQ(after.at(0)[i], after.at(0)[i - 1] + 1);
}

TEST_F(SaveRestoreTest, BadStateFilesAreRefusedNamingTheProblem) {
  Worker& a = Start("a");
  ASSERT_TRUE(WaitReady(a));
  ASSERT_TRUE(WaitForConsole("cpu 0 reg 2 "));
  hvstack::internal::SaveStateResponse saved;
  ASSERT_TRUE(Save("s1", true, &saved).ok());
  ASSERT_TRUE(Wait(a).has_value());
  const std::string state = ReadFile(dir_ + "/s1.state");
  auto attempt = [&](const std::string& name) {
    Worker& w = Restore(name, "s1");
    EXPECT_FALSE(WaitReady(w)) << name;
    return Wait(w);
  };
  // Truncated.
  ASSERT_EQ(::truncate((dir_ + "/s1.state").c_str(), state.size() / 2), 0);
  std::optional<WorkerExitReport> r = attempt("truncated");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->reason(), WorkerExitReport::WORKER_ERROR);
  EXPECT_THAT(r->detail(), HasSubstr("truncated"));
  // Corrupted.
  std::string bad = state;
  bad[bad.size() / 2] ^= 0x40;
  std::ofstream(dir_ + "/s1.state", std::ios::binary) << bad;
  r = attempt("corrupted");
  ASSERT_TRUE(r.has_value());
  EXPECT_THAT(r->detail(), HasSubstr("corrupted"));
  EXPECT_EQ(r->status_code(), static_cast<int>(absl::StatusCode::kDataLoss));
  // A newer format.
  bad = state;
  bad[8] = 2;
  std::ofstream(dir_ + "/s1.state", std::ios::binary) << bad;
  r = attempt("newer");
  ASSERT_TRUE(r.has_value());
  EXPECT_THAT(r->detail(), HasSubstr("format version 2"));
  // A changed configuration.
  std::ofstream(dir_ + "/s1.state", std::ios::binary) << state;
  config_.set_vcpus(4);
  r = attempt("vcpus");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(r->detail(), HasSubstr("vcpus: the saved VM had 2"));
  config_.set_vcpus(2);
  // The memory file of another save.
  ASSERT_EQ(::truncate((dir_ + "/s1.memory").c_str(), 4096 + (32 << 20)), 0);
  r = attempt("memory");
  ASSERT_TRUE(r.has_value());
  EXPECT_THAT(r->detail(), HasSubstr("memory file"));
  EXPECT_THAT(ReadFile(dir_ + "/console.log"), Not(HasSubstr("panic")));
}

TEST_F(SaveRestoreTest, EnlightenedGuestKeepsItsChannels) {
  config_.set_kernel_path(Runfile("guest/enlightened.elf"));
  config_.set_cmdline("hostname=saved.example");
  config_.set_vcpus(1);
  config_.set_enlightened(true);
  Worker& a = Start("a");
  ASSERT_TRUE(WaitReady(a));
  ASSERT_TRUE(WaitForConsole("heartbeat answered"));
  ASSERT_TRUE(WaitForConsole("kvp: host reads the intrinsic pool"));
  uint64_t seq_before = 0;
  {
    grpc::ClientContext ctx;
    hvstack::internal::WorkerStatus status;
    ASSERT_TRUE(Stub()->GetStatus(&ctx, {}, &status).ok());
    seq_before = status.integration().heartbeat_sequence();
  }
  hvstack::internal::SaveStateResponse saved;
  grpc::Status s = Save("s1", true, &saved);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(Wait(a).has_value());
  const size_t log_size = ReadFile(dir_ + "/console.log").size();

  Worker& b = Restore("b", "s1");
  ASSERT_TRUE(WaitReady(b)) << ReadFile(dir_ + "/worker.log");
  const absl::Time restored = absl::Now();
  // A new heartbeat answer, without any re-negotiation.
  uint64_t seq = 0;
  hvstack::internal::GuestIntegration integration;
  while (absl::Now() < restored + kvmbox::Scaled(absl::Seconds(2))) {
    grpc::ClientContext ctx;
    hvstack::internal::WorkerStatus status;
    ASSERT_TRUE(Stub()->GetStatus(&ctx, {}, &status).ok());
    integration = status.integration();
    seq = integration.heartbeat_sequence();
    if (seq > seq_before &&
        integration.heartbeat() ==
            hvstack::internal::GuestIntegration::HEARTBEAT_OK)
      break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_GT(seq, seq_before) << "no heartbeat answered after the restore";
  EXPECT_EQ(integration.heartbeat(),
            hvstack::internal::GuestIntegration::HEARTBEAT_OK);
  EXPECT_EQ(integration.vmbus_version(), (5u << 16) | 3);
  // KVP round trip.
  {
    grpc::ClientContext ctx;
    hvstack::internal::KvpSetRequest set;
    set.set_pool(0);
    set.set_key("restored");
    set.set_value("yes");
    hvstack::internal::KvpSetResponse r;
    grpc::Status st = Stub()->SetKvp(&ctx, set, &r);
    EXPECT_TRUE(st.ok()) << st.error_message();
  }
  ASSERT_TRUE(WaitForConsole("kvp set pool 0: restored = yes"));
  // A time sample followed the restore.
  const std::string after = ReadFile(dir_ + "/console.log").substr(log_size);
  EXPECT_THAT(after, HasSubstr("time sample"));
  EXPECT_THAT(after, Not(HasSubstr("vmbus version")));
  EXPECT_THAT(after, Not(HasSubstr("negotiated")));
  // The shutdown IC still works.
  {
    grpc::ClientContext ctx;
    hvstack::internal::ShutdownGuestRequest req;
    req.set_reason("after restore");
    hvstack::internal::ShutdownGuestResponse r;
    grpc::Status st = Stub()->ShutdownGuest(&ctx, req, &r);
    EXPECT_TRUE(st.ok()) << st.error_message();
  }
  std::optional<WorkerExitReport> rb = Wait(b);
  ASSERT_TRUE(rb.has_value());
  EXPECT_EQ(rb->reason(), WorkerExitReport::GUEST_POWER_OFF)
      << rb->DebugString();
}

// Issue 14: a VM with a disk is saved while //guest:storage works on it
// (storvsp drains its in-flight SRBs first), restored by a fresh worker with
// the same disk, and the guest finishes its I/O with no error and no
// re-initialization of the controller.
TEST_F(SaveRestoreTest, StorageGuestFinishesItsDiskWorkAfterARestore) {
  config_.set_kernel_path(Runfile("guest/storage.elf"));
  config_.set_cmdline("seed=7");
  config_.set_vcpus(1);
  config_.set_enlightened(true);
  const std::string image = dir_ + "/disk.raw";
  constexpr uint64_t kDiskBytes = 8 << 20;
  {
    const int fd = ::open(image.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, kDiskBytes), 0);
    ::close(fd);
  }
  hvstack::internal::WorkerDisk* d = config_.add_disks();
  d->set_backend(hvstack::internal::WorkerDisk::BACKEND_RAW_FILE);
  d->set_fd(100);
  d->set_size_bytes(kDiskBytes);
  d->set_logical_block_size(512);
  d->set_display_name(image);
  // Above the numbers posix_spawn maps to (see Restore).
  auto open_disk = [&] {
    const int fd = ::open(image.c_str(), O_RDWR | O_CLOEXEC);
    const int high = ::fcntl(fd, F_DUPFD_CLOEXEC, 200);
    ::close(fd);
    return high;
  };
  const int disk_a = open_disk();
  Worker& a = Start("a", {{disk_a, 100}});
  ::close(disk_a);
  ASSERT_TRUE(WaitReady(a)) << ReadFile(dir_ + "/worker.log");
  ASSERT_TRUE(WaitForConsole("storage: controller 0: vstor"))
      << ReadFile(dir_ + "/console.log");
  hvstack::internal::SaveStateResponse saved;
  grpc::Status s = Save("d1", true, &saved);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(Wait(a).has_value());
  const std::string before = ReadFile(dir_ + "/console.log");
  ASSERT_THAT(before, Not(HasSubstr("storage: done"))) << "saved too late";

  const int disk_b = open_disk();
  Worker& b = Restore("b", "d1", false, {{disk_b, 100}});
  ::close(disk_b);
  ASSERT_TRUE(WaitReady(b)) << ReadFile(dir_ + "/worker.log");
  ASSERT_TRUE(WaitForConsole("storage: done, 0 errors", absl::Seconds(120),
                             before.size()))
      << ReadFile(dir_ + "/console.log");
  const std::string after =
      ReadFile(dir_ + "/console.log").substr(before.size());
  EXPECT_THAT(after, Not(HasSubstr("storage: controller 0")))
      << "no second initialization";
  std::optional<WorkerExitReport> rb = Wait(b);
  ASSERT_TRUE(rb.has_value());
  EXPECT_EQ(rb->reason(), WorkerExitReport::GUEST_POWER_OFF)
      << rb->DebugString();
}

}  // namespace
