// The whole sandbox, for real and as root: vmms's half (uid, cgroup,
// SpawnSandboxed) from this test, the worker's half in sandbox_probe, and
// every claim checked from the outside through /proc and the cgroup files.
// Each case runs twice: the probe exec'd (SpawnSandboxed) and forked by the
// worker fork server (a sandbox_probe --zygote-fd, vmwp/zygote.h), which must
// confine it exactly the same.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/scoped_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/sandbox/probe_launcher.h"
#include "vmms/sandbox/netns_pool.h"
#include "vmms/sandbox/violation_exit.h"
#include "vmms/sandbox/zygote.h"

namespace sandbox {
namespace {

using ::sandbox::testing::ProbeOptions;
using ::sandbox::testing::ProbeRun;
using ::testing::Contains;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The value of "Key:" in a /proc status file, whitespace collapsed.
std::string StatusField(const std::string& status, const std::string& key) {
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (absl::ConsumePrefix(&line, key + ":")) {
      std::vector<std::string> parts =
          absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
      return absl::StrJoin(parts, " ");
    }
  }
  return "<missing>";
}

std::string NsLink(const std::string& proc, const char* ns) {
  return std::filesystem::read_symlink(proc + "/ns/" + ns).string();
}

enum class Spawn { kExec, kForked };

std::string SpawnName(Spawn spawn) {
  return spawn == Spawn::kExec ? "Exec" : "Forked";
}

// One fork server for the whole binary, as vmms keeps one.
Zygote* SharedZygote() {
  static Zygote* zygote = [] {
    absl::StatusOr<std::unique_ptr<Zygote>> started =
        Zygote::Start(testing::ProbePath());
    return started.ok() ? started->release() : nullptr;
  }();
  return zygote;
}

class SandboxTest : public ::testing::TestWithParam<Spawn> {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "the sandbox needs root";
  }
  // The options every case starts from: exec'd or forked.
  ProbeOptions Options(Spawn spawn) {
    ProbeOptions options;
    if (spawn == Spawn::kForked) {
      options.zygote = SharedZygote();
      EXPECT_NE(options.zygote, nullptr) << "no fork server";
    }
    return options;
  }
};

INSTANTIATE_TEST_SUITE_P(Spawns, SandboxTest,
                         ::testing::Values(Spawn::kExec, Spawn::kForked),
                         [](const auto& info) {
                           return SpawnName(info.param);
                         });

TEST_P(SandboxTest, ConfinedProbeSeenFromOutside) {
  // Descriptors where a NIC's and a disk's would be: inherited at their
  // numbers, nothing else.
  int tap_like[2], disk_like[2];
  ASSERT_EQ(::pipe2(tap_like, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(disk_like, O_CLOEXEC), 0);
  base::ScopedFd tap_read(tap_like[0]), tap_write(tap_like[1]);
  base::ScopedFd disk_read(disk_like[0]), disk_write(disk_like[1]);
  ProbeOptions options = Options(GetParam());
  options.extra_fds = {{tap_read.get(), 40}, {disk_read.get(), 100}};
  auto run = ProbeRun::Start(options);
  ASSERT_TRUE(run.ok()) << run.status();
  auto lines = (*run)->ReadUntilLocked();
  ASSERT_TRUE(lines.ok()) << lines.status();

  // Inside view: its own pid namespace, nothing of the host, the kernel
  // readable but not writable, the runtime dir writable, the root not.
  EXPECT_THAT(*lines, Contains("pid=1"));
  EXPECT_THAT(*lines, Contains("fds=0,1,2,3,4,5,40,100"));
  EXPECT_THAT(*lines, Contains("hook_uid=0 hook_kernel=yes"));
  EXPECT_THAT(*lines, Contains("etc_passwd=absent"));
  EXPECT_THAT(*lines, Contains("bin_sh=absent"));
  EXPECT_THAT(*lines, Contains("kernel_read=fake-kernel"));
  EXPECT_THAT(*lines, Contains("kernel_write=Read-only file system"));
  EXPECT_THAT(*lines, Contains("runtime_write=ok"));
  EXPECT_THAT(*lines, Contains("root_write=Read-only file system"));
  EXPECT_THAT(*lines, Contains("dev_null=ok"));
  // The file written inside landed in the host's runtime dir.
  EXPECT_TRUE(std::filesystem::exists((*run)->runtime_dir() + "/inside.txt"));

  const std::string proc = absl::StrCat("/proc/", (*run)->pid());
  const std::string status = ReadFile(proc + "/status");
  const std::string uid = absl::StrCat((*run)->spec().uid);
  const std::string gid = absl::StrCat((*run)->spec().gid);
  EXPECT_EQ(StatusField(status, "Uid"),
            absl::StrCat(uid, " ", uid, " ", uid, " ", uid));
  EXPECT_EQ(StatusField(status, "Gid"),
            absl::StrCat(gid, " ", gid, " ", gid, " ", gid));
  EXPECT_EQ(StatusField(status, "Groups"), "");
  EXPECT_EQ(StatusField(status, "CapEff"), "0000000000000000");
  EXPECT_EQ(StatusField(status, "CapPrm"), "0000000000000000");
  EXPECT_EQ(StatusField(status, "CapBnd"), "0000000000000000");
  EXPECT_EQ(StatusField(status, "CapAmb"), "0000000000000000");
  EXPECT_EQ(StatusField(status, "NoNewPrivs"), "1");
  EXPECT_EQ(StatusField(status, "Seccomp"), "2");

  // TSYNC: the thread started before lock-down is filtered too.
  int tasks = 0;
  for (const auto& task : std::filesystem::directory_iterator(proc + "/task")) {
    ++tasks;
    EXPECT_EQ(
        StatusField(ReadFile(task.path().string() + "/status"), "Seccomp"), "2")
        << task.path();
  }
  EXPECT_GE(tasks, 2);

  for (const char* ns : {"mnt", "pid", "net", "ipc", "uts"}) {
    EXPECT_NE(NsLink(proc, ns), NsLink("/proc/self", ns)) << ns;
  }

  // Limits, read from the cgroup files, and the probe is inside them.
  const VmCgroup* cgroup = (*run)->cgroup();
  ASSERT_NE(cgroup, nullptr);
  const ResourceLimits& limits = (*run)->limits();
  EXPECT_EQ(std::string(absl::StripAsciiWhitespace(
                ReadFile(cgroup->LimitFile("memory")))),
            absl::StrCat(limits.memory_bytes));
  EXPECT_EQ(std::string(absl::StripAsciiWhitespace(
                ReadFile(cgroup->LimitFile("pids")))),
            absl::StrCat(limits.pids_max));
  EXPECT_THAT(ReadFile(cgroup->LimitFile("cpu")),
              ::testing::HasSubstr(absl::StrCat(limits.cpu_quota_us)));
  const std::string membership = ReadFile(proc + "/cgroup");
  for (const std::string& dir : cgroup->dirs()) {
    EXPECT_THAT(ReadFile(dir + "/cgroup.procs"),
                ::testing::HasSubstr(absl::StrCat((*run)->pid())))
        << dir;
  }
  EXPECT_THAT(membership, ::testing::HasSubstr(
                              absl::StrCat("/hvstack/", (*run)->spec().vm_id)));

  ASSERT_TRUE((*run)->Send('x').ok());
  int wait_status = (*run)->Wait();
  EXPECT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0)
      << "wait status " << wait_status;
  EXPECT_EQ(DescribeSandboxExit(wait_status, (*run)->ViolationBytes()),
            std::nullopt);

  // vmms's cleanup after reaping.
  EXPECT_TRUE(cgroup->Remove().ok());
  for (const std::string& dir : cgroup->dirs()) {
    EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
  }
}

struct Violation {
  const char* call;
  const char* thread_kind;
};

class ViolationTest
    : public ::testing::TestWithParam<std::tuple<Violation, Spawn>> {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "the sandbox needs root";
  }
};

TEST_P(ViolationTest, KillsTheWorkerAndNamesTheCall) {
  const Violation violation = std::get<0>(GetParam());
  ProbeOptions options;
  if (std::get<1>(GetParam()) == Spawn::kForked) {
    options.zygote = SharedZygote();
    ASSERT_NE(options.zygote, nullptr) << "no fork server";
  }
  options.forbidden = violation.call;
  options.forbidden_thread = violation.thread_kind;
  auto run = ProbeRun::Start(options);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_TRUE((*run)->ReadUntilLocked().ok());
  ASSERT_TRUE((*run)->Send('f').ok());
  const int wait_status = (*run)->Wait();
  ASSERT_TRUE(WIFSIGNALED(wait_status))
      << "the probe survived " << violation.call << ": status " << wait_status;
  EXPECT_EQ(WTERMSIG(wait_status), SIGSYS);
  EXPECT_EQ(DescribeSandboxExit(wait_status, (*run)->ViolationBytes()),
            absl::StrCat("sandbox violation: ", violation.call));
}

INSTANTIATE_TEST_SUITE_P(
    ForbiddenCalls, ViolationTest,
    ::testing::Combine(
        ::testing::Values(Violation{"openat", "service"},
                          Violation{"execve", "service"},
                          Violation{"socket", "service"},
                          Violation{"socket", "device"},
                          // Allowed to gRPC threads, not to a vCPU thread.
                          Violation{"accept4", "vcpu"},
                          // A setup-only KVM request after lock-down.
                          Violation{"ioctl", "device"}),
        ::testing::Values(Spawn::kExec, Spawn::kForked)),
    [](const auto& info) {
      const Violation& v = std::get<0>(info.param);
      return absl::StrCat(v.call, "_on_", v.thread_kind, "_",
                          SpawnName(std::get<1>(info.param)));
    });

// vmms's fast path: the worker joins a pre-made empty net namespace.
TEST_P(SandboxTest, PooledNetNamespaceIsPrivateAndEmpty) {
  NetNamespacePool pool(1);
  ProbeOptions options = Options(GetParam());
  options.netns_pool = &pool;
  auto first = ProbeRun::Start(options);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = ProbeRun::Start(options);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_TRUE((*first)->ReadUntilLocked().ok());
  ASSERT_TRUE((*second)->ReadUntilLocked().ok());
  const std::string a = absl::StrCat("/proc/", (*first)->pid());
  const std::string b = absl::StrCat("/proc/", (*second)->pid());
  EXPECT_NE(NsLink(a, "net"), NsLink("/proc/self", "net"));
  EXPECT_NE(NsLink(a, "net"), NsLink(b, "net")) << "one namespace per worker";
  // Only a loopback device (down), nothing of the host's.
  std::vector<std::string> devices;
  for (absl::string_view line :
       absl::StrSplit(ReadFile(a + "/net/dev"), '\n')) {
    if (absl::StrContains(line, ":")) {
      devices.emplace_back(
          absl::StripAsciiWhitespace(line.substr(0, line.find(':'))));
    }
  }
  EXPECT_EQ(devices, std::vector<std::string>{"lo"});
  for (auto* run : {&*first, &*second}) {
    ASSERT_TRUE((*run)->Send('x').ok());
    const int wait_status = (*run)->Wait();
    EXPECT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0);
  }
}

TEST_P(SandboxTest, UnsandboxedProbeForComparison) {
  if (GetParam() == Spawn::kForked) GTEST_SKIP() << "vmms execs these";
  ProbeOptions options;
  options.sandbox = false;
  auto run = ProbeRun::Start(options);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_TRUE((*run)->ReadUntilLocked().ok());
  const std::string status =
      ReadFile(absl::StrCat("/proc/", (*run)->pid(), "/status"));
  EXPECT_EQ(StatusField(status, "Seccomp"), "0");
  ASSERT_TRUE((*run)->Send('x').ok());
  const int wait_status = (*run)->Wait();
  EXPECT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0);
}

}  // namespace
}  // namespace sandbox
