#include "vmwp/sandbox/violation_report.h"

#include <seccomp.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "proto/hvstack/internal/sandbox_violation.h"

namespace sandbox {
namespace {

using hvstack::internal::ViolationRecord;

std::atomic<int> g_report_fd{-1};

// si_code of a seccomp SIGSYS (SYS_SECCOMP in the kernel's siginfo.h; glibc
// does not always expose it).
constexpr int kSiCodeSeccomp = 1;

bool SameString(const char* a, const char* b) {
  while (*a != '\0' && *a == *b) {
    ++a;
    ++b;
  }
  return *a == *b;
}

// True for an open of one of the benign probes (BenignProbePaths), which
// is then answered with ENOENT instead of running.
bool IsBenignProbe(int nr, const greg_t* regs) {
  const char* path = nullptr;
  if (nr == SYS_openat) path = reinterpret_cast<const char*>(regs[REG_RSI]);
  if (nr == SYS_open) path = reinterpret_cast<const char*>(regs[REG_RDI]);
  if (path == nullptr) return false;
  for (const char* probe : BenignProbePaths()) {
    if (SameString(path, probe)) return true;
  }
  return false;
}

// Async-signal-safe: raw syscalls only, no allocation, no locks.
void OnSigsys(int sig, siginfo_t* info, void* context) {
  if (info->si_code != kSiCodeSeccomp) {
    // Not ours (someone sent SIGSYS): end as if it had been fatal.
    ::syscall(SYS_exit_group, 128 + SIGSYS);
  }
  greg_t* regs = static_cast<ucontext_t*>(context)->uc_mcontext.gregs;
  if (IsBenignProbe(info->si_syscall, regs)) {
    // The call did not run; make it return -ENOENT, as it would in the
    // minimal root anyway, and carry on.
    regs[REG_RAX] = -ENOENT;
    return;
  }
  ViolationRecord record = {};
  record.magic = ViolationRecord::kMagic;
  record.syscall_nr = info->si_syscall;
  record.arch = info->si_arch;
  record.instruction_pointer = reinterpret_cast<uint64_t>(info->si_call_addr);
  int fd = g_report_fd.load(std::memory_order_relaxed);
  if (fd >= 0) {
    [[maybe_unused]] long n = ::syscall(SYS_write, fd, &record, sizeof(record));
  }
  // SIGSYS is blocked while this handler runs. Repeating the exact call
  // (same number, same arguments, same filter) traps again; the kernel
  // forces a blocked seccomp SIGSYS to its default action, which kills the
  // whole process with SIGSYS, even as pid 1 of its namespace.
  ::syscall(info->si_syscall, regs[REG_RDI], regs[REG_RSI], regs[REG_RDX],
            regs[REG_R10], regs[REG_R8], regs[REG_R9]);
  // Unreachable unless the filter changed in between.
  ::syscall(SYS_exit_group, 128 + SIGSYS);
}

}  // namespace

absl::Status InstallViolationReporter(int report_fd) {
  g_report_fd.store(report_fd, std::memory_order_relaxed);
  struct sigaction action = {};
  action.sa_sigaction = OnSigsys;
  // No SA_RESETHAND: the handler stays for the benign probes; a real
  // violation dies by the forced second trap (see OnSigsys).
  action.sa_flags = SA_SIGINFO;
  sigemptyset(&action.sa_mask);
  if (::sigaction(SIGSYS, &action, nullptr) != 0) {
    return absl::InternalError(absl::StrCat(
        "sandbox: cannot install the SIGSYS handler: ", std::strerror(errno)));
  }
  // A thread that blocks SIGSYS still gets the forced signal (the kernel
  // unblocks it), so the mask needs no care here.
  return absl::OkStatus();
}

absl::Span<const char* const> BenignProbePaths() {
  // glibc's get_nprocs (std::thread::hardware_concurrency, used by gRPC's
  // thread pools while running) reads the first two, falling back to
  // sched_getaffinity; gRPC reads somaxconn when it listens.
  static constexpr const char* kPaths[] = {
      "/sys/devices/system/cpu/online",
      "/sys/devices/system/cpu/possible",
      "/proc/stat",
      "/proc/sys/net/core/somaxconn",
  };
  return kPaths;
}

}  // namespace sandbox
