#include "vmwp/sandbox/seccomp_policy.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "base/scoped_fd.h"
#include "hvcore/kvm_abi.h"
#include "spdlog/spdlog.h"

namespace sandbox {
namespace {

constexpr uint32_t V = static_cast<uint32_t>(ThreadKind::kVcpu);
constexpr uint32_t D = static_cast<uint32_t>(ThreadKind::kDevice);
constexpr uint32_t S = static_cast<uint32_t>(ThreadKind::kService);
constexpr uint32_t ALL = V | D | S;

// The allowlist. One line per system call: which thread kinds may make it,
// how its arguments are narrowed, and why it is needed. Absent on purpose:
// open/openat/creat (every file is opened before lock-down), execve/execveat,
// socket/socketpair/connect/bind/listen (the worker's only socket is bound
// before lock-down), fork/vfork, ptrace, mount, unshare/setns, kill (other
// processes), memfd_create, and mmap/mprotect with PROT_EXEC.
constexpr SyscallRule kSyscalls[] = {
    // Memory: malloc arenas, thread stacks, guest RAM is mapped earlier.
    {"brk", ALL, ArgCheck::kNone, "malloc"},
    {"mmap", ALL, ArgCheck::kNoExec, "malloc, thread stacks; never PROT_EXEC"},
    {"mprotect", ALL, ArgCheck::kNoExec, "stack guard pages; never PROT_EXEC"},
    {"munmap", ALL, ArgCheck::kNone, "free"},
    {"mremap", ALL, ArgCheck::kNone, "realloc of large blocks"},
    {"madvise", ALL, ArgCheck::kNone, "malloc trimming, thread exit"},
    {"mincore", S, ArgCheck::kNone,
     "a save writes only guest pages that were ever touched (issue 14)"},
    // Descriptors that already exist.
    {"read", ALL, ArgCheck::kNone, "eventfds, pipes, sockets, VM files"},
    {"write", ALL, ArgCheck::kNone, "console log, eventfds, logs"},
    {"readv", ALL, ArgCheck::kNone, "sockets, disks"},
    {"writev", ALL, ArgCheck::kNone, "spdlog, sockets"},
    {"pread64", ALL, ArgCheck::kNone, "disk images"},
    {"pwrite64", ALL, ArgCheck::kNone, "disk images"},
    {"lseek", ALL, ArgCheck::kNone, "log files"},
    {"close", ALL, ArgCheck::kNone, "closing what was opened before"},
    {"fstat", ALL, ArgCheck::kNone, "stdio buffering"},
    {"newfstatat", ALL, ArgCheck::kNone,
     "glibc's fstat (AT_EMPTY_PATH); the root holds nothing to probe"},
    {"fcntl", ALL, ArgCheck::kFcntlSafe, "O_NONBLOCK, FD_CLOEXEC"},
    {"ioctl", ALL, ArgCheck::kIoctlTable, "KVM requests in use (IoctlTable)"},
    {"fsync", D | S, ArgCheck::kNone, "exit report, disks"},
    {"fdatasync", D | S, ArgCheck::kNone, "disks"},
    {"ftruncate", D | S, ArgCheck::kNone, "console log rotation (pre-opened)"},
    // The runtime dir is the only writable mount; renames stay inside it.
    {"rename", S, ArgCheck::kNone, "exit report tmp -> final, log rotation"},
    {"renameat", S, ArgCheck::kNone, "as rename"},
    {"renameat2", S, ArgCheck::kNone, "as rename; RENAME_EXCHANGE rotation"},
    {"unlink", S, ArgCheck::kNone, "worker.sock removed at shutdown"},
    {"unlinkat", S, ArgCheck::kNone, "as unlink"},
    // Synchronisation and time.
    {"futex", ALL, ArgCheck::kNone, "absl::Mutex, condition variables"},
    // Disk I/O (vsp/storage): submit to and reap from the io_uring rings
    // created before lock-down, each restricted to READV/WRITEV/FSYNC/
    // FALLOCATE on its one registered image file. VP threads submit the
    // requests they drain; device threads reap. io_uring_setup and
    // io_uring_register stay forbidden: no new or widened ring.
    {"io_uring_enter", V | D, ArgCheck::kNone, "disk I/O (restricted rings)"},
    {"sched_yield", ALL, ArgCheck::kNone, "spin-then-block locks"},
    {"clock_gettime", ALL, ArgCheck::kNone, "vDSO fallback"},
    // Where the host's clock source has no vDSO (a nested VM's TSC marked
    // unstable, a PVM guest), glibc makes these real system calls too.
    {"gettimeofday", ALL, ArgCheck::kNone, "vDSO fallback (spdlog, gRPC)"},
    {"time", ALL, ArgCheck::kNone, "vDSO fallback"},
    {"clock_getres", ALL, ArgCheck::kNone, "vDSO fallback"},
    {"clock_nanosleep", ALL, ArgCheck::kNone, "sleep_for"},
    {"nanosleep", ALL, ArgCheck::kNone, "sleep_for (older glibc)"},
    {"getrandom", ALL, ArgCheck::kNone, "absl hash seeds, gRPC"},
    // Signals: vCPU kick (SIGRTMIN via pthread_kill), stop requests.
    {"rt_sigreturn", ALL, ArgCheck::kNone, "return from any handler"},
    {"rt_sigaction", D | S, ArgCheck::kNone,
     "glibc's first pthread_create installs SIGCANCEL/SIGSETXID handlers; "
     "a handler is the worker's own code, and seccomp's SIGSYS is forced"},
    {"rt_sigprocmask", ALL, ArgCheck::kNone, "vCPU kick signal mask"},
    {"rt_sigtimedwait", S, ArgCheck::kNone, "SignalWatcher (SIGTERM/SIGINT)"},
    {"sigaltstack", ALL, ArgCheck::kNone, "thread exit in glibc"},
    {"tgkill", ALL, ArgCheck::kSelfOnly, "pthread_kill (vCPU kick); own tgid"},
    // Identity queries glibc and gRPC make.
    {"getpid", ALL, ArgCheck::kNone, "tgkill's first argument"},
    {"gettid", ALL, ArgCheck::kNone, "logging, pthread_kill"},
    {"getuid", ALL, ArgCheck::kNone, "glibc"},
    {"geteuid", ALL, ArgCheck::kNone, "glibc"},
    {"getgid", ALL, ArgCheck::kNone, "glibc"},
    {"getegid", ALL, ArgCheck::kNone, "glibc"},
    {"sched_getaffinity", ALL, ArgCheck::kNone, "hardware_concurrency"},
    // Thread life cycle.
    {"clone", D | S, ArgCheck::kThreadOnly, "std::thread; never a process"},
    {"sched_getparam", ALL, ArgCheck::kNone,
     "glibc pthread_create reads the creator's scheduling; absl::Mutex reads "
     "a waiter's priority (pthread_getschedparam) when it queues behind "
     "another: VP threads held by a pause"},
    {"sched_getscheduler", ALL, ArgCheck::kNone,
     "with sched_getparam (pthread_getschedparam)"},
    {"clone3", D | S, ArgCheck::kEnosys,
     "flags live in memory seccomp cannot read: ENOSYS makes glibc use clone"},
    {"prctl", D | S, ArgCheck::kSetNameOnly,
     "gRPC names the threads it starts (seen while a guest runs)"},
    {"rseq", ALL, ArgCheck::kNone, "glibc registers it per thread"},
    {"set_robust_list", ALL, ArgCheck::kNone, "new threads"},
    {"exit", ALL, ArgCheck::kNone, "thread exit"},
    {"exit_group", ALL, ArgCheck::kNone, "process exit"},
    {"restart_syscall", ALL, ArgCheck::kNone, "interrupted sleeps"},
    {"seccomp", D | S, ArgCheck::kAddFilterOnly,
     "threads narrow themselves to their kind"},
    // Event loops and existing sockets (gRPC, VMBus signalling, console).
    {"epoll_create1", D | S, ArgCheck::kNone, "gRPC pollers"},
    {"epoll_ctl", D | S, ArgCheck::kNone, "gRPC pollers"},
    {"epoll_wait", D | S, ArgCheck::kNone, "gRPC pollers"},
    {"epoll_pwait", D | S, ArgCheck::kNone, "gRPC pollers"},
    {"poll", D | S, ArgCheck::kNone, "waiting on eventfds"},
    {"ppoll", D | S, ArgCheck::kNone, "waiting on eventfds"},
    {"eventfd2", D | S, ArgCheck::kNone, "gRPC wakeup fds, ring signals"},
    {"pipe2", D | S, ArgCheck::kNone, "gRPC wakeup fallback"},
    {"timerfd_create", D | S, ArgCheck::kNone, "device timers"},
    {"timerfd_settime", D | S, ArgCheck::kNone, "device timers"},
    {"accept4", S, ArgCheck::kNone, "worker.sock connections from vmms"},
    {"recvmsg", D | S, ArgCheck::kNone, "connected sockets"},
    {"sendmsg", D | S, ArgCheck::kNone, "connected sockets"},
    {"recvfrom", D | S, ArgCheck::kNone, "connected sockets"},
    {"sendto", D | S, ArgCheck::kNone, "connected sockets"},
    {"shutdown", S, ArgCheck::kNone, "closing RPC connections"},
    {"getsockopt", S, ArgCheck::kNone, "gRPC (SO_ERROR)"},
    {"setsockopt", S, ArgCheck::kNone, "gRPC (buffer sizes)"},
    {"getsockname", S, ArgCheck::kNone, "gRPC"},
    {"getpeername", S, ArgCheck::kNone, "gRPC"},
};

// ioctl requests, by the thread kinds that issue them. Setup-only requests
// (KVM_CREATE_*, KVM_SET_USER_MEMORY_REGION, KVM_SET_CPUID2, MSR filters,
// KVM_GET_API_VERSION, ...) are absent: they run before lock-down.
const IoctlRule kIoctls[] = {
    {KVM_RUN, "KVM_RUN", V},
    {KVM_GET_REGS, "KVM_GET_REGS", V},
    {KVM_SET_REGS, "KVM_SET_REGS", V},
    {KVM_GET_SREGS, "KVM_GET_SREGS", V},
    {KVM_SET_SREGS, "KVM_SET_SREGS", V},
    // <linux/kvm.h>'s KVM_GET/SET_MSRS are wrong in C++ (hvcore/kvm_abi.h):
    // hvcore issues these numbers.
    {hvcore::kvm_abi::kGetMsrs, "KVM_GET_MSRS", V},
    {hvcore::kvm_abi::kSetMsrs, "KVM_SET_MSRS", V},
    {KVM_GET_FPU, "KVM_GET_FPU", V},
    {KVM_SET_FPU, "KVM_SET_FPU", V},
    {KVM_GET_LAPIC, "KVM_GET_LAPIC", V},
    {KVM_SET_LAPIC, "KVM_SET_LAPIC", V},
    {KVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS", V},
    {KVM_SET_VCPU_EVENTS, "KVM_SET_VCPU_EVENTS", V},
    {KVM_GET_MP_STATE, "KVM_GET_MP_STATE", V},
    {KVM_SET_MP_STATE, "KVM_SET_MP_STATE", V},
    {KVM_TRANSLATE, "KVM_TRANSLATE", V},
    // Save (issue 14): each held VP reads its own state on its thread
    // (vid::Partition::RunOnEachVp); the numbers come from hvcore's kvm_abi
    // where <linux/kvm.h> is wrong for C++. Restore runs before lock-down.
    {hvcore::kvm_abi::kGetXsave, "KVM_GET_XSAVE", V},
    {hvcore::kvm_abi::kGetXsave2, "KVM_GET_XSAVE2", V},
    {KVM_GET_XCRS, "KVM_GET_XCRS", V},
    {KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS", V},
    {hvcore::kvm_abi::kGetCpuid2, "KVM_GET_CPUID2", V},
    // ... and the service thread of WorkerService.SaveState the VM's.
    {KVM_GET_IRQCHIP, "KVM_GET_IRQCHIP", S},
    {KVM_GET_PIT2, "KVM_GET_PIT2", S},
    {KVM_GET_CLOCK, "KVM_GET_CLOCK", S},
    // VM-fd requests: interrupts raised from a vCPU exit or a device thread.
    {KVM_IRQ_LINE, "KVM_IRQ_LINE", V | D},
    {KVM_SIGNAL_MSI, "KVM_SIGNAL_MSI", V | D},
    {KVM_IRQFD, "KVM_IRQFD", D},
    {KVM_IOEVENTFD, "KVM_IOEVENTFD", D},
    // Sockets and pipes.
    {FIONREAD, "FIONREAD", D | S},
    {FIONBIO, "FIONBIO", D | S},
};

struct ContextDeleter {
  void operator()(scmp_filter_ctx ctx) const { seccomp_release(ctx); }
};
using Context = std::unique_ptr<void, ContextDeleter>;

uint32_t DefaultAction(ViolationAction action) {
  switch (action) {
    case ViolationAction::kTrapAndReport:
      return SCMP_ACT_TRAP;
    case ViolationAction::kKillProcess:
      return SCMP_ACT_KILL_PROCESS;
    case ViolationAction::kLogOnly:
      return SCMP_ACT_LOG;
  }
  return SCMP_ACT_KILL_PROCESS;
}

absl::Status RuleError(const char* name, int rc) {
  return absl::InternalError(absl::StrCat("sandbox: seccomp rule for ", name,
                                          " rejected: ", std::strerror(-rc)));
}

absl::Status AddRule(scmp_filter_ctx ctx, const SyscallRule& rule,
                     uint32_t kinds) {
  const int nr = seccomp_syscall_resolve_name(rule.name);
  if (nr == __NR_SCMP_ERROR) {
    return absl::InternalError(
        absl::StrCat("sandbox: unknown system call \"", rule.name, "\""));
  }
  int rc = 0;
  switch (rule.check) {
    case ArgCheck::kNone:
      rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
      break;
    case ArgCheck::kIoctlTable:
      for (const IoctlRule& ioctl : kIoctls) {
        if ((ioctl.kinds & kinds) == 0) continue;
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
                              SCMP_A1(SCMP_CMP_EQ, ioctl.request));
        if (rc != 0) return RuleError(ioctl.name, rc);
      }
      break;
    case ArgCheck::kFcntlSafe:
      for (int cmd : {F_GETFD, F_SETFD, F_GETFL, F_SETFL}) {
        rc = seccomp_rule_add(
            ctx, SCMP_ACT_ALLOW, nr, 1,
            SCMP_A1(SCMP_CMP_EQ, static_cast<scmp_datum_t>(cmd)));
        if (rc != 0) break;
      }
      break;
    case ArgCheck::kNoExec:
      rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
                            SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
      break;
    case ArgCheck::kThreadOnly:
      rc = seccomp_rule_add(
          ctx, SCMP_ACT_ALLOW, nr, 1,
          SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
      break;
    case ArgCheck::kSelfOnly:
      // The pid as this process sees it (1 in its namespace): a thread can
      // only signal its own thread group.
      rc = seccomp_rule_add(
          ctx, SCMP_ACT_ALLOW, nr, 1,
          SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(::getpid())));
      break;
    case ArgCheck::kEnosys:
      rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr, 0);
      break;
    case ArgCheck::kSetNameOnly:
      rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
                            SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME));
      break;
    case ArgCheck::kAddFilterOnly:
      rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 2,
                            SCMP_A0(SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER),
                            SCMP_A1(SCMP_CMP_EQ, 0));
      break;
  }
  if (rc != 0) return RuleError(rule.name, rc);
  return absl::OkStatus();
}

// Exports the compiled program through a memfd (libseccomp 2.5 has no
// in-memory export).
absl::StatusOr<std::vector<sock_filter>> Export(scmp_filter_ctx ctx) {
  base::ScopedFd fd(::memfd_create("hvstack-seccomp", MFD_CLOEXEC));
  if (!fd.valid()) {
    return absl::InternalError(
        absl::StrCat("sandbox: memfd_create: ", std::strerror(errno)));
  }
  if (int rc = seccomp_export_bpf(ctx, fd.get()); rc != 0) {
    return absl::InternalError(
        absl::StrCat("sandbox: seccomp_export_bpf: ", std::strerror(-rc)));
  }
  off_t size = ::lseek(fd.get(), 0, SEEK_END);
  if (size <= 0 || size % sizeof(sock_filter) != 0) {
    return absl::InternalError("sandbox: exported seccomp filter is malformed");
  }
  std::vector<sock_filter> program(size / sizeof(sock_filter));
  if (::pread(fd.get(), program.data(), size, 0) != size) {
    return absl::InternalError("sandbox: cannot read the exported filter");
  }
  return program;
}

absl::Status Install(const CompiledFilter& filter, unsigned int flags) {
  struct sock_fprog prog = {static_cast<unsigned short>(filter.program.size()),
                            const_cast<sock_filter*>(filter.program.data())};
  long rc = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
  if (rc != 0) {
    if (rc > 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "sandbox: thread ", rc,
          " has a seccomp filter of its own; TSYNC cannot cover it"));
    }
    return absl::PermissionDeniedError(absl::StrCat(
        "sandbox: installing the seccomp filter failed: ", std::strerror(errno),
        " (no_new_privs must be set first)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Span<const SyscallRule> SyscallTable() { return kSyscalls; }
absl::Span<const IoctlRule> IoctlTable() { return kIoctls; }

absl::StatusOr<CompiledFilter> CompileFilter(uint32_t kinds,
                                             ViolationAction action) {
  Context ctx(seccomp_init(DefaultAction(action)));
  if (ctx == nullptr)
    return absl::InternalError("sandbox: seccomp_init failed");
  // A 32-bit (int 0x80) or x32 call would bypass every rule keyed on
  // x86-64 numbers: the native arch only, anything else dies.
  if (seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH,
                       SCMP_ACT_KILL_PROCESS) != 0) {
    return absl::InternalError("sandbox: cannot set the bad-arch action");
  }
  for (const SyscallRule& rule : kSyscalls) {
    if ((rule.kinds & kinds) == 0) continue;
    if (absl::Status s = AddRule(ctx.get(), rule, kinds); !s.ok()) return s;
  }
  absl::StatusOr<std::vector<sock_filter>> program = Export(ctx.get());
  if (!program.ok()) return program.status();
  return CompiledFilter{kinds, *std::move(program)};
}

const CompiledFilter& SeccompPolicies::For(ThreadKind kind) const {
  switch (kind) {
    case ThreadKind::kVcpu:
      return vcpu;
    case ThreadKind::kDevice:
      return device;
    case ThreadKind::kService:
      return service;
  }
  return process;
}

absl::StatusOr<SeccompPolicies> CompilePolicies(ViolationAction action) {
  SeccompPolicies policies;
  struct {
    uint32_t kinds;
    CompiledFilter* out;
  } const jobs[] = {{ALL, &policies.process},
                    {V, &policies.vcpu},
                    {D, &policies.device},
                    {S, &policies.service}};
  for (const auto& job : jobs) {
    absl::StatusOr<CompiledFilter> filter = CompileFilter(job.kinds, action);
    if (!filter.ok()) return filter.status();
    *job.out = *std::move(filter);
  }
  return policies;
}

absl::Status InstallProcessFilter(const SeccompPolicies& policies) {
  if (absl::Status s = Install(policies.process, SECCOMP_FILTER_FLAG_TSYNC);
      !s.ok()) {
    return s;
  }
  spdlog::info(
      "sandbox: seccomp process filter installed on every thread: {} BPF "
      "instructions (vcpu {}, device {}, service {})",
      policies.process.program.size(), policies.vcpu.program.size(),
      policies.device.program.size(), policies.service.program.size());
  return absl::OkStatus();
}

absl::Status InstallThreadFilter(const SeccompPolicies& policies,
                                 ThreadKind kind) {
  return Install(policies.For(kind), 0);
}

}  // namespace sandbox
