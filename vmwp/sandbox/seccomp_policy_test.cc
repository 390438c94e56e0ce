#include "vmwp/sandbox/seccomp_policy.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "proto/hvstack/internal/sandbox_violation.h"
#include "vmwp/sandbox/violation_report.h"

namespace sandbox {
namespace {

using hvstack::internal::ParseViolationRecord;
using hvstack::internal::ViolationRecord;

// What vmms makes of a worker's end (vmms/sandbox/violation_exit.h has the
// real one; the worker's tests only need the call's name from the record).
std::optional<std::string> DescribeSandboxExit(int status,
                                               std::string_view bytes) {
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSYS) return std::nullopt;
  std::optional<ViolationRecord> record = ParseViolationRecord(bytes);
  if (!record) return "sandbox violation: unknown system call";
  char* name =
      seccomp_syscall_resolve_num_arch(record->arch, record->syscall_nr);
  std::string result =
      absl::StrCat("sandbox violation: ", name != nullptr ? name : "?");
  std::free(name);
  return result;
}

TEST(SeccompPolicyTest, TableIsAuditable) {
  std::set<std::string> seen;
  for (const SyscallRule& rule : SyscallTable()) {
    EXPECT_NE(seccomp_syscall_resolve_name(rule.name), __NR_SCMP_ERROR)
        << rule.name;
    EXPECT_TRUE(seen.insert(rule.name).second) << "duplicate " << rule.name;
    EXPECT_NE(rule.kinds, 0u) << rule.name;
    EXPECT_EQ(rule.kinds & ~kAllKinds, 0u) << rule.name;
    EXPECT_GT(std::string(rule.why).size(), 2u) << rule.name;
  }
  std::set<unsigned long> requests;
  for (const IoctlRule& ioctl : IoctlTable()) {
    EXPECT_TRUE(requests.insert(ioctl.request).second) << ioctl.name;
    EXPECT_NE(ioctl.kinds, 0u) << ioctl.name;
  }
}

TEST(SeccompPolicyTest, NeverAllowsEscapeHatches) {
  for (const SyscallRule& rule : SyscallTable()) {
    for (const char* banned : {"open",
                               "openat",
                               "openat2",
                               "creat",
                               "execve",
                               "execveat",
                               "socket",
                               "socketpair",
                               "connect",
                               "bind",
                               "listen",
                               "fork",
                               "vfork",
                               "ptrace",
                               "mount",
                               "umount2",
                               "pivot_root",
                               "chroot",
                               "unshare",
                               "setns",
                               "kill",
                               "memfd_create",
                               "process_vm_readv",
                               "process_vm_writev",
                               "bpf",
                               "perf_event_open",
                               "keyctl",
                               "add_key",
                               "userfaultfd",
                               "io_uring_setup",
                               "io_uring_register",
                               "setuid",
                               "setresuid",
                               "personality",
                               "init_module",
                               "finit_module",
                               "kexec_load"}) {
      EXPECT_STRNE(rule.name, banned);
    }
  }
  for (const IoctlRule& ioctl : IoctlTable()) {
    EXPECT_NE(ioctl.request, static_cast<unsigned long>(KVM_CREATE_VM));
    EXPECT_NE(ioctl.request, static_cast<unsigned long>(KVM_CREATE_VCPU));
    EXPECT_NE(ioctl.request,
              static_cast<unsigned long>(KVM_SET_USER_MEMORY_REGION));
  }
}

TEST(SeccompPolicyTest, CompilesEveryKind) {
  auto policies = CompilePolicies(ViolationAction::kTrapAndReport);
  ASSERT_TRUE(policies.ok()) << policies.status();
  for (const CompiledFilter* f :
       {&policies->vcpu, &policies->device, &policies->service}) {
    EXPECT_GT(f->program.size(), 10u);
    EXPECT_LE(f->program.size(), policies->process.program.size());
  }
  // BPF programs are capped at 4096 instructions.
  EXPECT_LT(policies->process.program.size(), 4096u);
  std::printf(
      "filter sizes (BPF instructions): process %zu, vcpu %zu, "
      "device %zu, service %zu\n",
      policies->process.program.size(), policies->vcpu.program.size(),
      policies->device.program.size(), policies->service.program.size());
}

// Runs `body` in a forked child confined to `kind`; returns the wait status.
// `report_fd` >= 0 installs the violation reporter on it; otherwise the
// reporter still runs (on an internal pipe) so that a failure names the
// call in `last_violation`.
std::string last_violation;

int RunConfined(ThreadKind kind, ViolationAction action,
                const std::function<int()>& body, int report_fd = -1) {
  last_violation.clear();
  auto policies = CompilePolicies(action);
  if (!policies.ok()) {
    ADD_FAILURE() << policies.status();
    return -1;
  }
  int own[2] = {-1, -1};
  if (report_fd < 0 && ::pipe(own) == 0) report_fd = own[1];
  pid_t pid = ::fork();
  if (pid == 0) {
    if (report_fd >= 0 && !InstallViolationReporter(report_fd).ok()) _exit(90);
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(91);
    if (!InstallThreadFilter(*policies, kind).ok()) _exit(92);
    _exit(body());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (own[0] >= 0) {
    ::close(own[1]);
    char buf[64];
    ssize_t n = ::read(own[0], buf, sizeof(buf));
    ::close(own[0]);
    last_violation =
        DescribeSandboxExit(status, std::string(buf, n > 0 ? n : 0))
            .value_or("");
  }
  return status;
}

bool DiedOfSigsys(int status) {
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS;
}
bool ExitedWith(int status, int code) {
  return WIFEXITED(status) && WEXITSTATUS(status) == code;
}

TEST(SeccompPolicyTest, VcpuThreadMayIssueKvmRunButNotSetupRequests) {
  int status =
      RunConfined(ThreadKind::kVcpu, ViolationAction::kTrapAndReport, [] {
        // Allowed: fails on the bad fd, not the filter.
        long rc = ::syscall(SYS_ioctl, -1, KVM_RUN, 0);
        return rc == -1 && errno == EBADF ? 0 : 1;
      });
  EXPECT_TRUE(ExitedWith(status, 0)) << status << " " << last_violation;
  status = RunConfined(ThreadKind::kVcpu, ViolationAction::kTrapAndReport, [] {
    ::syscall(SYS_ioctl, -1, KVM_CREATE_VCPU, 0);
    return 0;
  });
  EXPECT_TRUE(DiedOfSigsys(status)) << status;
}

// glibc calls the kernel for the time when the clock source has no vDSO (seen
// in a nested VM: "sandbox violation: gettimeofday"); every thread may.
TEST(SeccompPolicyTest, TimeSystemCallsAreAllowedOnEveryThread) {
  for (ThreadKind kind :
       {ThreadKind::kVcpu, ThreadKind::kDevice, ThreadKind::kService}) {
    int status = RunConfined(kind, ViolationAction::kTrapAndReport, [] {
      timespec ts{};
      timeval tv{};
      if (::syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) != 0) return 1;
      if (::syscall(SYS_gettimeofday, &tv, nullptr) != 0) return 2;
      if (::syscall(SYS_time, nullptr) == -1) return 3;
      if (::syscall(SYS_clock_getres, CLOCK_MONOTONIC, &ts) != 0) return 4;
      return 0;
    });
    EXPECT_TRUE(ExitedWith(status, 0))
        << static_cast<int>(kind) << ": " << status << " " << last_violation;
  }
}

TEST(SeccompPolicyTest, ExecutableMappingsAreRefused) {
  int status =
      RunConfined(ThreadKind::kService, ViolationAction::kTrapAndReport, [] {
        void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return 1;
        ::mprotect(p, 4096, PROT_READ | PROT_EXEC);
        return 0;
      });
  EXPECT_TRUE(DiedOfSigsys(status)) << status;
}

TEST(SeccompPolicyTest, DeviceThreadsMayStartThreadsButNotProcesses) {
  int status =
      RunConfined(ThreadKind::kDevice, ViolationAction::kTrapAndReport, [] {
        int value = 0;
        std::thread t([&] { value = 7; });
        t.join();
        return value == 7 ? 0 : 1;
      });
  EXPECT_TRUE(ExitedWith(status, 0)) << status << " " << last_violation;
  status = RunConfined(ThreadKind::kDevice, ViolationAction::kTrapAndReport,
                       [] { return ::fork() >= 0 ? 0 : 1; });
  EXPECT_TRUE(DiedOfSigsys(status)) << status;
}

TEST(SeccompPolicyTest, VcpuThreadsMayNotStartThreads) {
  int status =
      RunConfined(ThreadKind::kVcpu, ViolationAction::kTrapAndReport, [] {
        std::thread t([] {});
        t.join();
        return 0;
      });
  EXPECT_TRUE(DiedOfSigsys(status)) << status;
}

TEST(SeccompPolicyTest, FcntlLimitedToFlags) {
  int status =
      RunConfined(ThreadKind::kService, ViolationAction::kTrapAndReport,
                  [] { return ::fcntl(1, F_GETFL) >= 0 ? 0 : 1; });
  EXPECT_TRUE(ExitedWith(status, 0)) << status << " " << last_violation;
  status = RunConfined(ThreadKind::kService, ViolationAction::kTrapAndReport,
                       [] { return ::fcntl(1, F_DUPFD, 10) >= 0 ? 0 : 1; });
  EXPECT_TRUE(DiedOfSigsys(status)) << status;
}

TEST(SeccompPolicyTest, ReporterNamesTheCallAndTheProcessStillDiesOfSigsys) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  int status = RunConfined(
      ThreadKind::kService, ViolationAction::kTrapAndReport,
      [] {
        ::syscall(SYS_openat, AT_FDCWD, "/etc/hostname", O_RDONLY);
        return 0;
      },
      fds[1]);
  ::close(fds[1]);
  char buf[64];
  ssize_t n = ::read(fds[0], buf, sizeof(buf));
  ::close(fds[0]);
  ASSERT_TRUE(DiedOfSigsys(status)) << status;
  ASSERT_EQ(n, static_cast<ssize_t>(sizeof(ViolationRecord)));
  EXPECT_EQ(DescribeSandboxExit(status, std::string(buf, n)),
            "sandbox violation: openat");
}

TEST(SeccompPolicyTest, PrctlOnlyNamesThreads) {
  int status =
      RunConfined(ThreadKind::kDevice, ViolationAction::kTrapAndReport,
                  [] { return ::prctl(PR_SET_NAME, "dev-io") == 0 ? 0 : 1; });
  EXPECT_TRUE(ExitedWith(status, 0)) << status << " " << last_violation;
  status =
      RunConfined(ThreadKind::kDevice, ViolationAction::kTrapAndReport, [] {
        ::prctl(PR_SET_DUMPABLE, 1);
        return 0;
      });
  EXPECT_TRUE(DiedOfSigsys(status)) << status;
  EXPECT_EQ(last_violation, "sandbox violation: prctl");
}

// gRPC asks for the CPU count while the VM runs; glibc then opens
// /sys/devices/system/cpu/online. That must not kill the worker.
TEST(SeccompPolicyTest, BenignProbesGetEnoentAndTheWorkerCarriesOn) {
  int status =
      RunConfined(ThreadKind::kService, ViolationAction::kTrapAndReport, [] {
        long rc = ::syscall(SYS_openat, AT_FDCWD,
                            "/sys/devices/system/cpu/online", O_RDONLY);
        if (rc != -1 || errno != ENOENT) return 1;
        // Falls back to sched_getaffinity, which is allowed.
        return std::thread::hardware_concurrency() > 0 ? 0 : 2;
      });
  EXPECT_TRUE(ExitedWith(status, 0)) << status << " " << last_violation;
  // A path that merely starts like a probe is not one.
  status =
      RunConfined(ThreadKind::kService, ViolationAction::kTrapAndReport, [] {
        ::syscall(SYS_openat, AT_FDCWD, "/sys/devices/system/cpu/online/../x",
                  O_RDONLY);
        return 0;
      });
  EXPECT_TRUE(DiedOfSigsys(status)) << status;
  EXPECT_EQ(last_violation, "sandbox violation: openat");
}

TEST(SeccompPolicyTest, KillModeLeavesNoName) {
  int status =
      RunConfined(ThreadKind::kService, ViolationAction::kKillProcess, [] {
        ::syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
        return 0;
      });
  ASSERT_TRUE(DiedOfSigsys(status)) << status;
  EXPECT_EQ(DescribeSandboxExit(status, ""),
            "sandbox violation: unknown system call");
}

}  // namespace
}  // namespace sandbox
