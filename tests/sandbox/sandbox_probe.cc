// A stand-in worker for tests and the benchmark: confines itself exactly as
// vmwp will (ConfineProcess, then LockDown), reports what it sees from the
// inside on --report-fd, then waits for one command on --control-fd:
//   'x' exit 0;  'f' make the --test-forbidden-syscall call on a thread of
//   --forbidden-thread-kind (service = the main thread, or vcpu/device: a
//   thread that first narrows itself with InstallThreadFilter).
// Started with --zygote-fd=N it is a fork server (vmwp/zygote.h) whose
// children are probes, as vmwp's are workers.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "spdlog/spdlog.h"
#include "vmwp/sandbox/confine.h"
#include "vmwp/sandbox/seccomp_policy.h"
#include "vmwp/sandbox/testing/forbidden_syscall.h"
#include "vmwp/zygote.h"

ABSL_FLAG(std::string, vm_id, "probe", "cgroup name");
ABSL_FLAG(std::string, kernel, "", "host path of the fake kernel");
ABSL_FLAG(std::string, initrd, "", "host path of the fake initrd");
ABSL_FLAG(std::string, runtime_dir, "", "host path of the runtime dir");
ABSL_FLAG(uint32_t, uid, 0, "VM uid");
ABSL_FLAG(uint32_t, gid, 0, "VM gid");
ABSL_FLAG(int, report_fd, 3, "lines to the test");
ABSL_FLAG(int, control_fd, 4, "commands from the test");
ABSL_FLAG(int, violation_fd, 5, "violation records to the test");
ABSL_FLAG(bool, no_sandbox, false, "skip every confinement step (bench)");
ABSL_FLAG(bool, exit_after_confine, false, "exit 0 right after lock-down");
ABSL_FLAG(std::string, test_forbidden_syscall, "",
          "openat|execve|socket|accept4|ioctl, made on command 'f'");
ABSL_FLAG(std::string, forbidden_thread_kind, "service",
          "service|vcpu|device: the thread that makes the call");

namespace {

int g_report_fd = -1;

void Report(const std::string& line) {
  std::string out = line + "\n";
  [[maybe_unused]] ssize_t n = ::write(g_report_fd, out.data(), out.size());
}

[[noreturn]] void Fail(const absl::Status& status) {
  Report(absl::StrCat("error: ", status.ToString()));
  std::_Exit(1);
}

// The open descriptors, "0,1,2,3,4,5".
std::string OpenDescriptors() {
  std::vector<int> fds;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (dirent* entry = ::readdir(dir)) {
      int fd = -1;
      if (absl::SimpleAtoi(entry->d_name, &fd) && fd != ::dirfd(dir)) {
        fds.push_back(fd);
      }
    }
    ::closedir(dir);
  }
  std::sort(fds.begin(), fds.end());
  return absl::StrJoin(fds, ",");
}

// What the sandbox looks like from the inside, checked while open() is
// still allowed (before LockDown).
void ReportInsideView() {
  Report(absl::StrCat("pid=", ::getpid()));
  Report(absl::StrCat("etc_passwd=", ::access("/etc/passwd", F_OK) == 0
                                         ? "present"
                                         : "absent"));
  Report(absl::StrCat("bin_sh=",
                      ::access("/bin/sh", F_OK) == 0 ? "present" : "absent"));
  int fd = ::open("/vm/kernel", O_RDONLY | O_CLOEXEC);
  char buf[64] = {};
  ssize_t n = fd >= 0 ? ::read(fd, buf, sizeof(buf) - 1) : -1;
  if (fd >= 0) ::close(fd);
  Report(absl::StrCat("kernel_read=", n > 0 ? std::string(buf, n) : "failed"));
  fd = ::open("/vm/kernel", O_WRONLY | O_CLOEXEC);
  Report(absl::StrCat("kernel_write=",
                      fd >= 0 ? "allowed" : std::strerror(errno)));
  if (fd >= 0) ::close(fd);
  fd = ::open("/run/vm/inside.txt", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  Report(absl::StrCat("runtime_write=", fd >= 0 ? "ok" : std::strerror(errno)));
  if (fd >= 0) ::close(fd);
  fd = ::open("/newfile", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  Report(
      absl::StrCat("root_write=", fd >= 0 ? "allowed" : std::strerror(errno)));
  if (fd >= 0) ::close(fd);
  fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  Report(absl::StrCat("dev_null=",
                      fd >= 0 && ::write(fd, "x", 1) == 1 ? "ok" : "failed"));
  if (fd >= 0) ::close(fd);
}

void DoForbidden(const sandbox::SeccompPolicies* policies) {
  const std::string kind = absl::GetFlag(FLAGS_forbidden_thread_kind);
  const std::string which = absl::GetFlag(FLAGS_test_forbidden_syscall);
  auto call = [&] {
    absl::Status s = sandbox::testing::TriggerForbiddenSyscall(which);
    Report(absl::StrCat("survived: ", s.ToString()));
    std::_Exit(2);
  };
  if (kind == "service") call();
  sandbox::ThreadKind thread_kind = kind == "vcpu"
                                        ? sandbox::ThreadKind::kVcpu
                                        : sandbox::ThreadKind::kDevice;
  std::thread thread([&] {
    if (policies != nullptr) {
      if (absl::Status s = sandbox::InstallThreadFilter(*policies, thread_kind);
          !s.ok()) {
        Fail(s);
      }
    }
    call();
  });
  thread.join();
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> forked_argv;
  std::vector<char*> forked_ptrs;
  if (std::optional<int> zygote_fd = vmwp::ZygoteFdFlag(argc, argv)) {
    std::optional<std::vector<std::string>> probe =
        vmwp::ServeZygote(*zygote_fd, argc, argv);
    if (!probe.has_value()) return 0;
    forked_argv = *std::move(probe);
    for (std::string& arg : forked_argv) forked_ptrs.push_back(arg.data());
    forked_ptrs.push_back(nullptr);
    argc = static_cast<int>(forked_argv.size());
    argv = forked_ptrs.data();
  }
  // Before anything opens one.
  const std::string fds = OpenDescriptors();
  absl::ParseCommandLine(argc, argv);
  g_report_fd = absl::GetFlag(FLAGS_report_fd);
  Report(absl::StrCat("fds=", fds));
  const bool sandboxed = !absl::GetFlag(FLAGS_no_sandbox);

  sandbox::SeccompPolicies policies;
  if (sandboxed) {
    sandbox::SandboxSpec spec;
    spec.vm_id = absl::GetFlag(FLAGS_vm_id);
    spec.uid = absl::GetFlag(FLAGS_uid);
    spec.gid = absl::GetFlag(FLAGS_gid);
    spec.runtime_dir = absl::GetFlag(FLAGS_runtime_dir);
    sandbox::AddBootFiles(spec, absl::GetFlag(FLAGS_kernel),
                          absl::GetFlag(FLAGS_initrd));
    sandbox::ConfineOptions options;
    // Where vmwp opens what only root may read; here: proves it runs as
    // root inside the new root.
    std::string hook_view;
    options.while_still_root = [&hook_view] {
      hook_view = absl::StrCat(
          "hook_uid=", ::geteuid(),
          " hook_kernel=", ::access("/vm/kernel", R_OK) == 0 ? "yes" : "no");
      return absl::OkStatus();
    };
    std::vector<std::pair<std::string, double>> step_ms;
    options.step_ms = &step_ms;
    absl::StatusOr<sandbox::SeccompPolicies> confined =
        sandbox::ConfineProcess(spec, options);
    if (!confined.ok()) Fail(confined.status());
    policies = *std::move(confined);
    if (!absl::GetFlag(FLAGS_exit_after_confine)) {
      Report(hook_view);
      ReportInsideView();
      // A thread that exists before lock-down, like vmwp's gRPC and signal
      // threads: TSYNC must cover it (the test reads every task's status).
      std::thread([] {
        for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
      }).detach();
    }
    const auto lock_start = std::chrono::steady_clock::now();
    if (absl::Status s =
            sandbox::LockDown(policies, absl::GetFlag(FLAGS_violation_fd));
        !s.ok()) {
      Fail(s);
    }
    step_ms.emplace_back("lockdown",
                         std::chrono::duration<double, std::milli>(
                             std::chrono::steady_clock::now() - lock_start)
                             .count());
    std::string steps = "steps:";
    for (const auto& [name, ms] : step_ms) {
      absl::StrAppend(&steps, ";", name, "=", ms);
    }
    Report(steps);
  }
  Report("locked");
  if (absl::GetFlag(FLAGS_exit_after_confine)) return 0;

  char command = 0;
  if (::read(absl::GetFlag(FLAGS_control_fd), &command, 1) != 1) return 3;
  if (command == 'f') DoForbidden(sandboxed ? &policies : nullptr);
  return 0;
}
