#include "vmms/sandbox/spawn.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/scoped_fd.h"

namespace sandbox {

int NamespaceFlags(bool joins_prepared_netns) {
  int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
  if (!joins_prepared_netns) flags |= CLONE_NEWNET;
  return flags;
}
namespace {

// Descriptors are parked at or above this number before clone, so that
// dup2 onto the worker's numbers never overwrites a source.
constexpr int kParkBase = 256;
constexpr size_t kChildStackSize = 64 * 1024;

// Everything the child touches, prepared by the parent. Shared through
// CLONE_VM; the child reports failure in `error`/`step`.
struct ChildArgs {
  const char* binary;
  char* const* argv;
  char* const* envp;
  const int* procs_fds;
  int procs_count;
  int netns_fd;
  const std::pair<int, int>* fds;  // (parked, target), sorted by target
  int fd_count;
  sigset_t original_mask;
  volatile int error;
  volatile const char* step;
};

int ChildMain(void* opaque) {
  ChildArgs* args = static_cast<ChildArgs*>(opaque);
  auto fail = [args](const char* step) {
    args->error = errno;
    args->step = step;
    ::syscall(SYS_exit_group, 127);
    return 127;
  };
  // Handlers belong to vmms and would run on its memory: default them all
  // before signals are unblocked again.
  for (int sig = 1; sig < _NSIG; ++sig) {
    struct sigaction old;
    if (::syscall(SYS_rt_sigaction, sig, nullptr, &old, _NSIG / 8) == 0 &&
        old.sa_handler != SIG_IGN && old.sa_handler != SIG_DFL) {
      struct sigaction dfl = {};
      dfl.sa_handler = SIG_DFL;
      ::syscall(SYS_rt_sigaction, sig, &dfl, nullptr, _NSIG / 8);
    }
  }
  for (int i = 0; i < args->procs_count; ++i) {
    // "0" is the writer itself, in v1 and v2 alike.
    if (::write(args->procs_fds[i], "0", 1) != 1) return fail("join cgroup");
  }
  if (args->netns_fd >= 0 && ::setns(args->netns_fd, CLONE_NEWNET) != 0) {
    return fail("join net namespace");
  }
  int next = 3;
  for (int i = 0; i < args->fd_count; ++i) {
    const auto [parked, target] = args->fds[i];
    if (::dup2(parked, target) < 0) return fail("dup2");
    if (target >= next) {
      if (target > next && ::syscall(SYS_close_range, next, target - 1,
                                     CLOSE_RANGE_CLOEXEC) != 0) {
        return fail("close_range");
      }
      next = target + 1;
    }
  }
  if (::syscall(SYS_close_range, next, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    return fail("close_range");
  }
  ::sigprocmask(SIG_SETMASK, &args->original_mask, nullptr);
  ::execve(args->binary, args->argv, args->envp);
  return fail("execve");
}

std::vector<char*> CStrings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (const std::string& s : strings)
    out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

absl::StatusOr<pid_t> SpawnSandboxed(const SpawnRequest& request) {
  if (request.argv.empty()) {
    return absl::InvalidArgumentError("sandbox: spawn needs argv[0]");
  }
  std::vector<base::ScopedFd> procs;
  if (request.cgroup != nullptr) {
    absl::StatusOr<std::vector<base::ScopedFd>> opened =
        request.cgroup->OpenProcsFiles();
    if (!opened.ok()) return opened.status();
    procs = *std::move(opened);
  }
  std::vector<int> procs_fds;
  for (const base::ScopedFd& fd : procs) procs_fds.push_back(fd.get());

  base::ScopedFd netns;
  int namespace_flags = request.namespace_flags;
  if (request.netns_fd >= 0) {
    netns.reset(::fcntl(request.netns_fd, F_DUPFD_CLOEXEC, 0));
    if (!netns.valid()) {
      return absl::InvalidArgumentError("sandbox: netns_fd is not open");
    }
    namespace_flags &= ~CLONE_NEWNET;
  } else if (!request.netns_path.empty()) {
    namespace_flags &= ~CLONE_NEWNET;
    netns.reset(::open(request.netns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!netns.valid()) {
      return absl::NotFoundError(
          absl::StrCat("sandbox: cannot open net namespace ",
                       request.netns_path, ": ", std::strerror(errno)));
    }
  }

  std::vector<base::ScopedFd> parked;
  std::vector<std::pair<int, int>> fds;
  for (const auto& [source, target] : request.fds) {
    if (target < 0 || target >= kParkBase) {
      return absl::InvalidArgumentError(
          absl::StrCat("sandbox: worker descriptor number ", target,
                       " outside 0..", kParkBase - 1));
    }
    base::ScopedFd copy(::fcntl(source, F_DUPFD_CLOEXEC, kParkBase));
    if (!copy.valid()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sandbox: descriptor ", source, " to pass as ", target,
                       " is not open: ", std::strerror(errno)));
    }
    fds.emplace_back(copy.get(), target);
    parked.push_back(std::move(copy));
  }
  std::sort(fds.begin(), fds.end(),
            [](const auto& a, const auto& b) { return a.second < b.second; });

  std::vector<char*> argv = CStrings(request.argv);
  std::vector<char*> envp = CStrings(request.env);

  void* stack = ::mmap(nullptr, kChildStackSize, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) {
    return absl::ResourceExhaustedError("sandbox: no memory for spawn stack");
  }
  ChildArgs args = {};
  args.binary = request.binary.c_str();
  args.argv = argv.data();
  args.envp = envp.data();
  args.procs_fds = procs_fds.data();
  args.procs_count = static_cast<int>(procs_fds.size());
  args.netns_fd = netns.get();
  args.fds = fds.data();
  args.fd_count = static_cast<int>(fds.size());
  args.error = 0;
  args.step = nullptr;

  // No vmms signal handler may run in the child while it shares our memory.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &args.original_mask);
  pid_t pid =
      ::clone(ChildMain, static_cast<char*>(stack) + kChildStackSize,
              CLONE_VM | CLONE_VFORK | namespace_flags | SIGCHLD, &args);
  const int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &args.original_mask, nullptr);
  ::munmap(stack, kChildStackSize);

  if (pid < 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        "sandbox: clone with namespaces 0x", absl::Hex(namespace_flags),
        " failed: ", std::strerror(clone_errno),
        " (vmms needs CAP_SYS_ADMIN)"));
  }
  if (args.error != 0) {
    // The child has exited (CLONE_VFORK returned): reap it.
    int status;
    ::waitpid(pid, &status, 0);
    return absl::InternalError(absl::StrCat(
        "sandbox: starting ", request.binary, " failed at ",
        const_cast<const char*>(args.step), ": ", std::strerror(args.error)));
  }
  return pid;
}

}  // namespace sandbox
