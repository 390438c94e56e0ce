// Issue 6's "must show", end to end with the real binaries: vmctl -> vmms ->
// a sandboxed vmwp (vmwp_testing: vmwp plus test-only switches on the kernel
// command line) running guests the build produces. The worker is inspected
// from outside through /proc and the cgroup files.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/harness/process.h"
#include "tests/harness/vmms_fixture.h"
#include "tests/harness/vmms_instance.h"

namespace hvtest {
namespace {

using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// "Key:\tvalue" lines of /proc/<pid>/status.
std::map<std::string, std::string> ProcStatus(const std::string& path) {
  std::map<std::string, std::string> fields;
  for (absl::string_view line : absl::StrSplit(ReadFile(path), '\n')) {
    std::vector<std::string> kv = absl::StrSplit(line, absl::MaxSplits(':', 1));
    if (kv.size() == 2)
      fields[kv[0]] = std::string(absl::StripAsciiWhitespace(kv[1]));
  }
  return fields;
}

// vmms's child processes whose command line holds `marker` (the worker fork
// server is `vmwp --zygote-fd=N`; forked workers are vmms's children too).
std::vector<pid_t> ChildrenWith(pid_t parent, const std::string& marker) {
  std::vector<pid_t> found;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &pid)) continue;
    std::map<std::string, std::string> st =
        ProcStatus(absl::StrCat("/proc/", pid, "/status"));
    if (st["PPid"] != absl::StrCat(parent) ||
        absl::StartsWith(st["State"], "Z"))
      continue;
    std::string cmdline = ReadFile(absl::StrCat("/proc/", pid, "/cmdline"));
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (absl::StrContains(cmdline, marker)) found.push_back(pid);
  }
  return found;
}

std::string Namespace(pid_t pid, const std::string& kind) {
  return std::filesystem::read_symlink(
             absl::StrCat("/proc/", pid, "/ns/", kind))
      .string();
}

class SandboxTest : public VmmsTest {
 protected:
  // vmms with vmwp_testing as its worker (plus `extra`).
  void StartVmms(std::vector<std::string> extra = {}) {
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
      GTEST_SKIP() << "needs read/write access to /dev/kvm";
    }
    if (geteuid() != 0) GTEST_SKIP() << "the sandbox needs vmms to be root";
    std::vector<std::string> args = {"--vmwp", Runfile("vmwp/vmwp_testing")};
    args.insert(args.end(), extra.begin(), extra.end());
    vmms_ = std::make_unique<VmmsInstance>(dir_.path(), args);
    absl::Status started = vmms_->Start();
    ASSERT_TRUE(started.ok()) << started;
  }
  void SetUp() override {}  // Each test starts vmms its way.

  void CreateAndStart(const std::string& name, const std::string& cmdline) {
    std::vector<std::string> args = {"create",      name,       "--kernel",
                                     Guest("spin"), "--memory", "64"};
    if (!cmdline.empty()) {
      args.push_back("--cmdline");
      args.push_back(cmdline);
    }
    CommandResult created = Vmctl(args);
    ASSERT_EQ(created.exit_code, 0) << created.err;
    CommandResult started = Vmctl({"start", name});
    ASSERT_EQ(started.exit_code, 0) << started.err;
  }
};

TEST_F(SandboxTest, RunningWorkerIsConfinedAsSeenThroughProc) {
  StartVmms();
  if (IsSkipped() || HasFatalFailure()) return;  // no /dev/kvm, or no vmms
  CreateAndStart("jail1", "");
  nlohmann::json vm = Show("jail1");
  ASSERT_EQ(vm.value("state", ""), "VM_STATE_RUNNING") << vm.dump();
  const pid_t pid = static_cast<pid_t>(std::stoll(vm.value("workerPid", "0")));
  ASSERT_GT(pid, 0) << vm.dump();
  const uint32_t uid = vm["sandbox"].value("uid", 0u);
  const uint32_t gid = vm["sandbox"].value("gid", 0u);
  ASSERT_NE(uid, 0u) << vm.dump();
  const std::string uuid = vm.value("uuid", "");

  // Identity, capabilities, no_new_privs and seccomp, on every task (thread).
  int tasks = 0;
  for (const auto& task : std::filesystem::directory_iterator(
           absl::StrCat("/proc/", pid, "/task"))) {
    std::map<std::string, std::string> st =
        ProcStatus(task.path().string() + "/status");
    SCOPED_TRACE(task.path().string() + " (" + st["Name"] + ")");
    const std::string u = absl::StrCat(uid), g = absl::StrCat(gid);
    EXPECT_EQ(st["Uid"], absl::StrCat(u, "\t", u, "\t", u, "\t", u));
    EXPECT_EQ(st["Gid"], absl::StrCat(g, "\t", g, "\t", g, "\t", g));
    EXPECT_EQ(st["Groups"], "");
    EXPECT_EQ(st["CapEff"], "0000000000000000");
    EXPECT_EQ(st["CapPrm"], "0000000000000000");
    EXPECT_EQ(st["CapBnd"], "0000000000000000");
    EXPECT_EQ(st["NoNewPrivs"], "1");
    EXPECT_EQ(st["Seccomp"], "2");
    ++tasks;
  }
  EXPECT_GE(tasks, 3) << "main, a VP thread and gRPC's threads at least";

  // Namespaces other than vmms's.
  for (const char* ns : {"mnt", "pid", "net", "ipc", "uts"}) {
    EXPECT_NE(Namespace(pid, ns), Namespace(vmms_->pid(), ns)) << ns;
  }

  // Only the VM's own files in its mount namespace.
  const std::string root = absl::StrCat("/proc/", pid, "/root");
  EXPECT_TRUE(std::filesystem::exists(root + "/vm/kernel"));
  EXPECT_TRUE(std::filesystem::exists(root + "/run/vm/console.log"));
  EXPECT_TRUE(std::filesystem::exists(root + "/dev/null"));
  for (const char* absent : {"/etc/passwd", "/bin/sh", "/dev/kvm", "/proc",
                             "/sys", "/root", "/tmp", "/usr"}) {
    EXPECT_FALSE(std::filesystem::exists(root + absent)) << absent;
  }
  // Not even vmms's own state: the worker's /run/vm is its runtime dir only.
  EXPECT_FALSE(std::filesystem::exists(root + "/run/vm/../vmms.db"));

  // Its cgroup holds it, with the limits for 64 MiB and 1 vCPU.
  EXPECT_THAT(ReadFile(absl::StrCat("/proc/", pid, "/cgroup")),
              HasSubstr("hvstack/" + uuid));
  const std::string memory_dir = "/sys/fs/cgroup/memory/hvstack/" + uuid;
  if (std::filesystem::exists(memory_dir)) {  // v1, as on these hosts
    EXPECT_EQ(ReadFile(memory_dir + "/memory.limit_in_bytes"),
              absl::StrCat((64 + 256) << 20, "\n"));
    EXPECT_EQ(ReadFile("/sys/fs/cgroup/pids/hvstack/" + uuid + "/pids.max"),
              "66\n");
    EXPECT_EQ(
        ReadFile("/sys/fs/cgroup/cpu/hvstack/" + uuid + "/cpu.cfs_quota_us"),
        "100000\n");
    EXPECT_THAT(ReadFile(memory_dir + "/cgroup.procs"),
                HasSubstr(absl::StrCat(pid, "\n")));
  } else {
    ADD_FAILURE() << "no v1 memory cgroup at " << memory_dir
                  << " (a v2 host: extend this check)";
  }
  EXPECT_THAT(Vmctl({"show", "jail1"}).out,
              HasSubstr(absl::StrCat("sandbox: uid ", uid, ", gid ", gid)));

  // Stop works through the sandbox, and the cgroup goes with the worker.
  ASSERT_EQ(Vmctl({"stop", "jail1"}).exit_code, 0);
  EXPECT_EQ(Show("jail1").value("state", ""), "VM_STATE_OFF");
  EXPECT_FALSE(std::filesystem::exists(memory_dir));
}

TEST_F(SandboxTest, ForbiddenCallsCrashOnlyTheirVmWithTheCallNamed) {
  StartVmms();
  if (IsSkipped() || HasFatalFailure()) return;  // no /dev/kvm, or no vmms
  CreateAndStart("bystander", "");
  const std::string bystander_pid = Show("bystander").value("workerPid", "");
  for (const char* call : {"openat", "execve", "socket"}) {
    const std::string name = absl::StrCat("bad-", call);
    CreateAndStart(name, absl::StrCat("test.forbidden_syscall=", call));
    nlohmann::json vm = WaitForState(name, "VM_STATE_CRASHED");
    EXPECT_EQ(vm.value("stateReason", ""),
              absl::StrCat("sandbox violation: ", call))
        << vm.dump();
  }
  // vmms and the other VM carried on.
  nlohmann::json bystander = Show("bystander");
  EXPECT_EQ(bystander.value("state", ""), "VM_STATE_RUNNING");
  EXPECT_EQ(bystander.value("workerPid", ""), bystander_pid);
  ASSERT_EQ(Vmctl({"stop", "bystander"}).exit_code, 0);
  // A VM crashed by a violation starts again: its slot and cgroup are
  // reusable, and the switch is in its command line, so it crashes again.
  ASSERT_EQ(Vmctl({"start", "bad-socket"}).exit_code, 0);
  EXPECT_EQ(
      WaitForState("bad-socket", "VM_STATE_CRASHED").value("stateReason", ""),
      "sandbox violation: socket");
}

TEST_F(SandboxTest, CgroupOutOfMemoryIsRecordedWithTheLimit) {
  StartVmms();
  if (IsSkipped() || HasFatalFailure()) return;  // no /dev/kvm, or no vmms
  CreateAndStart("hog", "test.allocate_mib=2048");
  nlohmann::json vm = WaitForState("hog", "VM_STATE_CRASHED");
  EXPECT_EQ(vm.value("stateReason", ""), "out of memory (cgroup limit 320 MiB)")
      << vm.dump();
}

// Issue 15: a fork server that dies (here SIGKILL) takes no running VM with
// it, is named in vmms's log, and the next start gets a new one: the VM
// started then is forked again, and nothing needs a vmms restart.
TEST_F(SandboxTest, AKilledForkServerIsReplacedAndItsWorkersRunOn) {
  StartVmms();
  if (IsSkipped() || HasFatalFailure()) return;  // no /dev/kvm, or no vmms
  CreateAndStart("before", "");
  if (HasFatalFailure()) return;
  nlohmann::json before = WaitForState("before", "VM_STATE_RUNNING");
  EXPECT_THAT(vmms_->Log(), HasSubstr("VM before: worker"));
  EXPECT_THAT(vmms_->Log(), HasSubstr(", forked;"));
  std::vector<pid_t> servers = ChildrenWith(vmms_->pid(), "--zygote-fd");
  ASSERT_EQ(servers.size(), 1u) << vmms_->Log();
  const pid_t first = servers[0];

  ASSERT_EQ(::kill(first, SIGKILL), 0);
  CreateAndStart("after", "");
  if (HasFatalFailure()) return;
  WaitForState("after", "VM_STATE_RUNNING");
  const std::string log = vmms_->Log();
  EXPECT_THAT(log, HasSubstr("the next start gets a new one")) << log;
  EXPECT_THAT(log, HasSubstr("worker fork server " + std::to_string(first) +
                             " started"));
  const size_t after_line = log.find("VM after: worker");
  ASSERT_NE(after_line, std::string::npos) << log;
  EXPECT_THAT(log.substr(after_line, log.find('\n', after_line) - after_line),
              HasSubstr(", forked;"));
  servers = ChildrenWith(vmms_->pid(), "--zygote-fd");
  ASSERT_EQ(servers.size(), 1u) << log;
  EXPECT_NE(servers[0], first);

  // The first VM never noticed: same worker, still running, and it stops.
  nlohmann::json still = Show("before");
  EXPECT_EQ(still.value("state", ""), "VM_STATE_RUNNING") << still.dump();
  EXPECT_EQ(still.value("workerPid", ""), before.value("workerPid", "x"));
  EXPECT_EQ(Vmctl({"stop", "before"}).exit_code, 0);
  EXPECT_EQ(Vmctl({"stop", "after"}).exit_code, 0);
}

TEST_F(SandboxTest, NoSandboxIsLoudAndShown) {
  StartVmms({"--no-sandbox"});
  if (IsSkipped() || HasFatalFailure()) return;  // no /dev/kvm, or no vmms
  CreateAndStart("open1", "");
  nlohmann::json vm = Show("open1");
  ASSERT_EQ(vm.value("state", ""), "VM_STATE_RUNNING") << vm.dump();
  EXPECT_THAT(Vmctl({"show", "open1"}).out,
              HasSubstr("sandbox: DISABLED (developer switch)\n"));
  const pid_t pid = static_cast<pid_t>(std::stoll(vm.value("workerPid", "0")));
  std::map<std::string, std::string> st =
      ProcStatus(absl::StrCat("/proc/", pid, "/status"));
  EXPECT_EQ(st["Seccomp"], "0");
  EXPECT_EQ(Namespace(pid, "mnt"), Namespace(vmms_->pid(), "mnt"));
  EXPECT_THAT(vmms_->Log(), HasSubstr("--no-sandbox"));
  EXPECT_THAT(vmms_->Log(), HasSubstr("WITHOUT a sandbox"));
  ASSERT_EQ(Vmctl({"stop", "open1"}).exit_code, 0);
}

}  // namespace
}  // namespace hvtest
