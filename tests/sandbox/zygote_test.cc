// The worker fork server (vmwp/zygote.h + vmms/sandbox/zygote.h) with real
// processes: this binary is both the test (vmms's side) and, started with
// --zygote-fd=N, the zygote, whose children run ChildProbe instead of
// WorkerMain and report what they see. It checks what makes a forked worker
// the same as an exec'd one: it is the caller's own child (CLONE_PARENT:
// waitpid sees its exit), pid 1 of new namespaces when asked, exactly the
// passed descriptors at their numbers, the request's argv in
// /proc/<pid>/cmdline, and a working C library (its thread id, raise(),
// threads) after a raw clone. And what vmms relies on around it: a request
// that is not a well-formed spawn is refused with the reason (and the zygote
// serves on, holding none of its descriptors), a dead zygote is named and
// replaced (ZygoteKeeper), and a vmwp that cannot serve turns the fork server
// off instead of failing starts. How forked workers are confined (uid,
// namespaces, seccomp, cgroup) is checked next to exec'd ones in
// sandbox_test.
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
#include <cstring>
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
#include "proto/hvstack/internal/worker.pb.h"
#include "proto/hvstack/internal/zygote.pb.h"
#include "tests/harness/process.h"
#include "vmms/sandbox/spawn.h"
#include "vmwp/zygote.h"

extern char** environ;

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

TEST_F(ZygoteTest, AGoneZygoteIsUnavailableAndSaysHowItEnded) {
  EXPECT_TRUE(zygote_->CheckAlive().ok());
  ::kill(zygote_->pid(), SIGKILL);
  absl::StatusOr<pid_t> spawned =
      zygote_->Spawn({.argv = {"vmwp"}, .fds = {}, .namespace_flags = 0});
  EXPECT_EQ(spawned.status().code(), absl::StatusCode::kUnavailable)
      << spawned.status();
  absl::Status alive = zygote_->CheckAlive();
  for (int i = 0; i < 1000 && alive.ok(); ++i) {
    ::usleep(1000);
    alive = zygote_->CheckAlive();
  }
  EXPECT_EQ(alive.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(
      std::string(alive.message()),
      ::testing::HasSubstr(absl::StrCat("worker fork server ", zygote_->pid(),
                                        " killed by signal 9 (SIGKILL)")));
}

// The zygote runs as root, unconfined: only a well-formed request becomes a
// process. Each bad one gets its reason, the zygote keeps none of the
// descriptors that came with it, and it goes on serving.
TEST_F(ZygoteTest, MalformedRequestsAreRefusedAndTheZygoteServesOn) {
  int canary[2];
  ASSERT_EQ(::pipe2(canary, O_CLOEXEC), 0);
  base::ScopedFd canary_read(canary[0]), canary_write(canary[1]);
  int ns = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(ns, 0);
  base::ScopedFd netns(ns);

  auto request = [](std::vector<std::string> argv, std::vector<int> numbers,
                    int flags = 0, int netns_index = -1) {
    hvstack::internal::ZygoteSpawnRequest r;
    for (const std::string& a : argv) r.add_argv(a);
    for (int n : numbers) r.add_fd_numbers(n);
    r.set_namespace_flags(flags);
    r.set_netns_index(netns_index);
    return r.SerializeAsString();
  };
  const int c = canary_write.get();
  struct Case {
    std::string name, bytes;
    std::vector<int> fds;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {"garbage",
       std::string("\xff\xff\xff\x01garbage", 11),
       {c},
       "refused: not a spawn request (11 bytes)"},
      {"no argv", request({}, {7}), {c}, "refused: no command line"},
      {"NUL in argv",
       request({std::string("vmwp\0--evil", 11)}, {7}),
       {c},
       "refused: an argument contains a NUL byte"},
      {"numbers without descriptors",
       request({"vmwp"}, {7, 8}),
       {c},
       "refused: 2 descriptor numbers for 1 passed descriptors"},
      {"descriptors without numbers",
       request({"vmwp"}, {}),
       {c},
       "refused: 0 descriptor numbers for 1 passed descriptors"},
      {"negative number",
       request({"vmwp"}, {-3}),
       {c},
       "refused: descriptor number -3 outside 0..255"},
      {"huge number",
       request({"vmwp"}, {100000}),
       {c},
       "refused: descriptor number 100000 outside 0..255"},
      {"number twice",
       request({"vmwp"}, {7, 7}),
       {c, c},
       "refused: descriptor number 7 given twice"},
      {"CLONE_VM",
       request({"vmwp"}, {7}, CLONE_VM),
       {c},
       "refused: clone flags 0x100 are not namespaces a worker may get"},
      {"CLONE_NEWUSER",
       request({"vmwp"}, {7}, CLONE_NEWUSER),
       {c},
       "refused: clone flags 0x10000000 are not namespaces"},
      {"netns index out of range",
       request({"vmwp"}, {7}, 0, 5),
       {c},
       "refused: net namespace index 5 outside the 1 passed descriptors"},
      {"a pipe as the net namespace",
       request({"vmwp"}, {7, -1}, 0, 1),
       {c, c},
       "refused: descriptor 1 is not a net namespace"},
      {"netns and CLONE_NEWNET",
       request({"vmwp"}, {7, -1}, CLONE_NEWNET, 1),
       {c, netns.get()},
       "refused: both a net namespace to join and CLONE_NEWNET"},
      {"too long",
       std::string(80 * 1024, 'x'),
       {c},
       "refused: message truncated"},
  };
  for (const Case& bad : cases) {
    absl::StatusOr<std::string> error =
        zygote_->RawRequestForTesting(bad.bytes, bad.fds);
    ASSERT_TRUE(error.ok()) << bad.name << ": " << error.status();
    EXPECT_THAT(*error, ::testing::StartsWith(bad.reason)) << bad.name;
    ASSERT_TRUE(zygote_->CheckAlive().ok()) << bad.name;
  }
  EXPECT_EQ(zygote_->spawned(), 0);
  // None of the passed copies is held: with ours closed, the pipe ends.
  canary_write.reset();
  char byte;
  EXPECT_EQ(::read(canary_read.get(), &byte, 1), 0)
      << "the zygote still holds a descriptor of a refused request";
  // And it still makes workers.
  std::map<std::string, std::string> report;
  int status = 0;
  pid_t pid = 0;
  SpawnProbe(0, report, status, pid);
  EXPECT_EQ(report["extra"], "N");
  EXPECT_EQ(zygote_->spawned(), 1);
}

// The real vmwp as the fork server (no KVM needed): a worker it forks is the
// same program as an exec'd one from WorkerMain on. Given a config that does
// not exist, both give up the same way: the ready pipe closes without its
// byte, the same exit status, the same exit report next to the config, and
// the forked one's /proc/<pid>/cmdline shows its own --config= (what vmms and
// tests look workers up by).
TEST(RealVmwpTest, AForkedWorkerFailsExactlyAsAnExecdOne) {
  const std::string vmwp = hvtest::Runfile("vmwp/vmwp");
  absl::StatusOr<std::unique_ptr<sandbox::Zygote>> zygote =
      sandbox::Zygote::Start(vmwp);
  ASSERT_TRUE(zygote.ok()) << zygote.status();
  struct Outcome {
    int status = -1;
    std::string ready, report, cmdline;
  };
  auto run = [&](bool forked) {
    Outcome out;
    hvtest::TempDir dir;
    const std::string config = absl::StrCat(dir.path(), "/worker_config.pb");
    int ready[2];
    EXPECT_EQ(::pipe2(ready, O_CLOEXEC), 0);
    base::ScopedFd ready_read(ready[0]), ready_write(ready[1]);
    base::ScopedFd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    sandbox::SpawnRequest request;
    request.binary = vmwp;
    request.argv = {vmwp, absl::StrCat("--config=", config), "--ready-fd=4"};
    for (char** e = environ; *e != nullptr; ++e) request.env.push_back(*e);
    request.fds = {{dev_null.get(), 0}, {ready_write.get(), 4}};
    absl::StatusOr<pid_t> pid =
        forked ? (*zygote)->Spawn({.argv = request.argv, .fds = request.fds})
               : sandbox::SpawnSandboxed(request);
    EXPECT_TRUE(pid.ok()) << pid.status();
    if (!pid.ok()) return out;
    ready_write.reset();
    // The forked worker writes its command line first thing; poll briefly.
    for (int i = 0; i < 200; ++i) {
      std::ifstream cmdline(absl::StrCat("/proc/", *pid, "/cmdline"));
      std::getline(cmdline, out.cmdline);  // NUL-separated: all of it
      if (out.cmdline.find("--config=") != std::string::npos) break;
      ::usleep(5000);
    }
    char byte;
    while (::read(ready_read.get(), &byte, 1) == 1) out.ready.push_back(byte);
    EXPECT_EQ(::waitpid(*pid, &out.status, 0), *pid);
    std::ifstream file(absl::StrCat(dir.path(), "/exit_report.pb"));
    hvstack::internal::WorkerExitReport report;
    if (file && report.ParseFromIstream(&file)) {
      // The detail names the config's path, which differs per run.
      std::string detail = report.detail();
      if (size_t at = detail.find(config); at != std::string::npos) {
        detail.replace(at, config.size(), "<config>");
      }
      out.report =
          absl::StrCat(report.reason(), " ", report.status_code(), " ", detail);
    }
    return out;
  };
  const Outcome exec = run(false);
  const Outcome fork = run(true);
  EXPECT_EQ(exec.ready, "");
  EXPECT_EQ(fork.ready, "");
  EXPECT_TRUE(WIFEXITED(exec.status)) << exec.status;
  EXPECT_EQ(fork.status, exec.status);
  EXPECT_THAT(exec.report, ::testing::StartsWith("4 "))  // WORKER_ERROR
      << "no exit report from the exec'd vmwp";
  EXPECT_EQ(fork.report, exec.report);
  EXPECT_THAT(fork.cmdline, ::testing::HasSubstr("--config="));
  EXPECT_EQ((*zygote)->spawned(), 1);
}

TEST(ZygoteKeeperTest, ADeadZygoteIsReplacedOnTheNextSpawn) {
  sandbox::ZygoteKeeper keeper(std::filesystem::read_symlink("/proc/self/exe"));
  ASSERT_TRUE(keeper.Start().ok());
  auto spawn = [&keeper]() -> absl::StatusOr<int> {
    int report_pipe[2];
    if (::pipe2(report_pipe, O_CLOEXEC) != 0)
      return absl::InternalError("pipe");
    base::ScopedFd report_read(report_pipe[0]), report_write(report_pipe[1]);
    absl::StatusOr<pid_t> pid =
        keeper.Spawn({.argv = {"vmwp", "--config=/x"},
                      .fds = {{report_write.get(), kReportFd}}});
    if (!pid.ok()) return pid.status();
    report_write.reset();
    ReadReport(report_read.get());
    int status = 0;
    ::waitpid(*pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  absl::StatusOr<int> first = spawn();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, kProbeExit);
  const pid_t old = keeper.pid();
  ASSERT_GT(old, 0);
  ::kill(old, SIGKILL);
  // Dead before the request: found dead, reaped, replaced; this start is
  // still forked.
  for (int i = 0; i < 1000 && ::kill(old, 0) == 0; ++i) {
    std::string stat;
    std::ifstream(absl::StrCat("/proc/", old, "/stat")) >> stat >> stat >> stat;
    if (stat == "Z") break;  // dead, not reaped yet
    ::usleep(1000);
  }
  absl::StatusOr<int> second = spawn();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*second, kProbeExit);
  EXPECT_EQ(keeper.restarts(), 1);
  EXPECT_NE(keeper.pid(), old);
  EXPECT_EQ(keeper.disabled(), "");
}

// A vmwp that cannot serve (here: one that exits at once) must not fail
// starts or be restarted for each: the fork server is turned off, and says
// why.
TEST(ZygoteKeeperTest, AZygoteThatNeverServesTurnsTheForkServerOff) {
  sandbox::ZygoteKeeper keeper("/bin/false");
  ASSERT_TRUE(keeper.Start().ok());  // posix_spawn itself works
  absl::StatusOr<pid_t> pid = keeper.Spawn({.argv = {"vmwp"}});
  EXPECT_EQ(pid.status().code(), absl::StatusCode::kUnavailable)
      << pid.status();
  EXPECT_THAT(keeper.disabled(),
              ::testing::HasSubstr("before it made a single worker"));
  EXPECT_THAT(keeper.disabled(), ::testing::HasSubstr("exited with status 1"));
  pid = keeper.Spawn({.argv = {"vmwp"}});
  EXPECT_EQ(pid.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(pid.status().message()),
              ::testing::HasSubstr("worker fork server off"));
  EXPECT_EQ(keeper.restarts(), 0);
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
