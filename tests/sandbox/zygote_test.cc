// The worker fork server (vmwp/zygote.h + vmms/sandbox/zygote.h) with real
// processes: this binary is both the test (vmms's side) and, started with
// --zygote-fd=N, the zygote, whose children run ChildProbe instead of
// WorkerMain and report what they see. It checks what makes a forked worker
// the same as an exec'd one: it is the caller's own child (CLONE_PARENT:
// waitpid sees its exit), pid 1 of new namespaces when asked, exactly the
// passed descriptors at their numbers, the request's argv in
// /proc/<pid>/cmdline, and a working C library (its thread id, raise(),
// threads) after a raw clone.
#include "vmms/sandbox/zygote.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/scoped_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmms/sandbox/spawn.h"
#include "vmwp/zygote.h"

namespace {

constexpr int kReportFd = 7;
constexpr int kExtraFd = 40;  // where a NIC's TAP descriptor would go
constexpr int kProbeExit = 7;

std::atomic<bool> got_signal{false};

// Runs in a forked "worker": reports key=value lines on kReportFd.
int ChildProbe(const std::vector<std::string>& argv) {
  std::string report;
  auto add = [&report](const std::string& key, const std::string& value) {
    absl::StrAppend(&report, key, "=", value, "\n");
  };
  add("argv", absl::StrJoin(argv, " "));
  add("pid", std::to_string(::getpid()));
  add("tid_is_pid", ::syscall(SYS_gettid) == ::getpid() ? "yes" : "no");
  std::string cmdline;
  {
    std::ifstream cmdline_file("/proc/self/cmdline", std::ios::binary);
    cmdline.assign(std::istreambuf_iterator<char>(cmdline_file),
                   std::istreambuf_iterator<char>());
  }
  for (char& c : cmdline) {
    if (c == '\0') c = ' ';
  }
  add("cmdline", std::string(absl::StripTrailingAsciiWhitespace(cmdline)));
  std::vector<int> fds;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (dirent* entry = ::readdir(dir)) {
      int fd = -1;
      if (absl::SimpleAtoi(entry->d_name, &fd) && fd != ::dirfd(dir))
        fds.push_back(fd);
    }
    ::closedir(dir);
  }
  std::sort(fds.begin(), fds.end());
  add("fds", absl::StrJoin(fds, ","));
  // raise() goes through the thread's own descriptor (its tid): a stale tid
  // from the zygote would send the signal nowhere.
  struct sigaction sa = {};
  sa.sa_handler = [](int) { got_signal = true; };
  ::sigaction(SIGUSR1, &sa, nullptr);
  ::raise(SIGUSR1);
  add("raise", got_signal ? "delivered" : "lost");
  std::atomic<bool> ran{false};
  std::thread([&ran] { ran = true; }).join();
  add("thread", ran ? "ran" : "no");
  char extra = 0;
  add("extra", ::read(kExtraFd, &extra, 1) == 1 ? std::string(1, extra) : "-");
  (void)!::write(kReportFd, report.data(), report.size());
  return kProbeExit;
}

std::map<std::string, std::string> ReadReport(int fd) {
  std::string all;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) all.append(buf, n);
  std::map<std::string, std::string> out;
  for (absl::string_view line : absl::StrSplit(all, '\n', absl::SkipEmpty())) {
    std::vector<std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    if (kv.size() == 2) out[kv[0]] = kv[1];
  }
  return out;
}

class ZygoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<sandbox::Zygote>> z =
        sandbox::Zygote::Start(std::filesystem::read_symlink("/proc/self/exe"));
    ASSERT_TRUE(z.ok()) << z.status();
    zygote_ = *std::move(z);
  }

  // Spawns a probe with the report pipe at kReportFd and a pipe holding "N"
  // at kExtraFd; returns its report and exit status.
  void SpawnProbe(int namespace_flags,
                  std::map<std::string, std::string>& report, int& status,
                  pid_t& pid) {
    int report_pipe[2], extra_pipe[2];
    ASSERT_EQ(::pipe2(report_pipe, O_CLOEXEC), 0);
    ASSERT_EQ(::pipe2(extra_pipe, O_CLOEXEC), 0);
    base::ScopedFd report_read(report_pipe[0]), report_write(report_pipe[1]);
    base::ScopedFd extra_read(extra_pipe[0]), extra_write(extra_pipe[1]);
    ASSERT_EQ(::write(extra_write.get(), "N", 1), 1);
    absl::StatusOr<pid_t> spawned = zygote_->Spawn(
        {.argv = {"vmwp", "--config=/nonexistent/vms/x/worker_config.pb",
                  "--ready-fd=4"},
         .fds = {{report_write.get(), kReportFd}, {extra_read.get(), kExtraFd}},
         .namespace_flags = namespace_flags});
    ASSERT_TRUE(spawned.ok()) << spawned.status();
    pid = *spawned;
    report_write.reset();
    report = ReadReport(report_read.get());
    // Our own child: waitpid works and sees its real exit.
    ASSERT_EQ(::waitpid(pid, &status, 0), pid) << std::strerror(errno);
  }

  std::unique_ptr<sandbox::Zygote> zygote_;
};

TEST_F(ZygoteTest, ForkedWorkerIsOurChildWithExactlyItsDescriptors) {
  std::map<std::string, std::string> report;
  int status = 0;
  pid_t pid = 0;
  SpawnProbe(0, report, status, pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), kProbeExit);
  EXPECT_EQ(report["pid"], std::to_string(pid));
  EXPECT_EQ(report["argv"],
            "vmwp --config=/nonexistent/vms/x/worker_config.pb --ready-fd=4");
  EXPECT_EQ(report["cmdline"], report["argv"]);
  EXPECT_EQ(report["fds"], absl::StrCat("0,1,2,", kReportFd, ",", kExtraFd));
  EXPECT_EQ(report["tid_is_pid"], "yes");
  EXPECT_EQ(report["raise"], "delivered");
  EXPECT_EQ(report["thread"], "ran");
  EXPECT_EQ(report["extra"], "N");
}

TEST_F(ZygoteTest, InNewNamespacesItIsPidOneAndStillOurChild) {
  if (::geteuid() != 0) GTEST_SKIP() << "new namespaces need root";
  std::map<std::string, std::string> report;
  int status = 0;
  pid_t pid = 0;
  SpawnProbe(sandbox::NamespaceFlags(/*joins_prepared_netns=*/false), report,
             status, pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), kProbeExit);
  EXPECT_EQ(report["pid"], "1");
  EXPECT_EQ(report["tid_is_pid"], "yes");
  EXPECT_EQ(report["raise"], "delivered");
  EXPECT_EQ(report["thread"], "ran");
  EXPECT_EQ(report["cmdline"], report["argv"]);
  EXPECT_EQ(report["fds"], absl::StrCat("0,1,2,", kReportFd, ",", kExtraFd));
}

TEST_F(ZygoteTest, AGoneZygoteIsUnavailable) {
  ::kill(zygote_->pid(), SIGKILL);
  absl::StatusOr<pid_t> spawned =
      zygote_->Spawn({.argv = {"vmwp"}, .fds = {}, .namespace_flags = 0});
  EXPECT_EQ(spawned.status().code(), absl::StatusCode::kUnavailable)
      << spawned.status();
}

}  // namespace

int main(int argc, char** argv) {
  if (std::optional<int> fd = vmwp::ZygoteFdFlag(argc, argv)) {
    std::optional<std::vector<std::string>> worker =
        vmwp::ServeZygote(*fd, argc, argv);
    if (!worker.has_value()) return 0;
    return ChildProbe(*worker);
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
