#include "vmms/worker_spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "vmms/sandbox/spawn.h"

extern char** environ;

namespace vmms {
namespace {

// Duplicates `fd` to a close-on-exec descriptor >= 10, so that the dup2 calls
// in the child to 3 and 4 can never overwrite a source descriptor that happens
// to be 3 or 4.
absl::StatusOr<base::ScopedFd> DupHigh(int fd, absl::string_view what) {
  base::ScopedFd high(::fcntl(fd, F_DUPFD_CLOEXEC, 10));
  if (!high) {
    return absl::InternalError(
        absl::StrCat("cannot duplicate ", what, ": ", strerror(errno)));
  }
  return high;
}

}  // namespace

absl::StatusOr<SpawnedWorker> SpawnWorker(const std::string& vmwp_path,
                                          const std::string& config_path,
                                          int kvm_fd,
                                          const InheritedFds& extra) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot create ready pipe: ", strerror(errno)));
  }
  base::ScopedFd ready_read(pipe_fds[0]);
  base::ScopedFd ready_write_low(pipe_fds[1]);
  absl::StatusOr<base::ScopedFd> ready_write =
      DupHigh(ready_write_low.get(), "ready pipe");
  if (!ready_write.ok()) return ready_write.status();
  ready_write_low.reset();
  absl::StatusOr<base::ScopedFd> kvm = DupHigh(kvm_fd, "kvm descriptor");
  if (!kvm.ok()) return kvm.status();
  // Extra descriptors are parked above every target first, for the same
  // reason.
  int max_target = kWorkerReadyFd;
  for (const auto& [fd, target] : extra)
    max_target = std::max(max_target, target);
  std::vector<base::ScopedFd> parked;
  for (const auto& [fd, target] : extra) {
    base::ScopedFd high(::fcntl(fd, F_DUPFD_CLOEXEC, max_target + 1));
    if (!high) {
      return absl::InternalError(absl::StrCat(
          "cannot duplicate descriptor for ", target, ": ", strerror(errno)));
    }
    parked.push_back(std::move(high));
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  absl::Cleanup destroy_actions = [&actions] {
    posix_spawn_file_actions_destroy(&actions);
  };
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  absl::Cleanup destroy_attr = [&attr] { posix_spawnattr_destroy(&attr); };

  // dup2 onto a different number clears close-on-exec on the copy; the
  // originals stay cloexec.
  int rc = posix_spawn_file_actions_adddup2(&actions, kvm->get(), kWorkerKvmFd);
  if (rc == 0)
    rc = posix_spawn_file_actions_adddup2(&actions, ready_write->get(),
                                          kWorkerReadyFd);
  for (size_t i = 0; rc == 0 && i < extra.size(); ++i) {
    rc = posix_spawn_file_actions_adddup2(&actions, parked[i].get(),
                                          extra[i].second);
  }
  if (rc == 0)
    rc = posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null",
                                          O_RDONLY, 0);
  // Belt and braces: everything vmms opens is cloexec, but a library might not
  // be.
  // (Between the fixed numbers and the extra ones everything vmms has is
  // close-on-exec.)
  if (rc == 0)
    rc = posix_spawn_file_actions_addclosefrom_np(&actions, max_target + 1);

  sigset_t empty_mask, default_signals;
  sigemptyset(&empty_mask);
  sigemptyset(&default_signals);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD})
    sigaddset(&default_signals, sig);
  if (rc == 0) rc = posix_spawnattr_setsigmask(&attr, &empty_mask);
  if (rc == 0) rc = posix_spawnattr_setsigdefault(&attr, &default_signals);
  // Its own session (and so its own process group, without a controlling
  // terminal): a ^C or hang-up in vmms's terminal is not the worker's, and
  // the worker outlives vmms (SIGKILL or restart), which reattaches to it.
  if (rc == 0) {
    rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
                                             POSIX_SPAWN_SETSIGDEF |
                                             POSIX_SPAWN_SETSID);
  }
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("cannot prepare worker spawn: ", strerror(rc)));
  }

  std::string config_arg = absl::StrCat("--config=", config_path);
  std::string ready_arg = absl::StrCat("--ready-fd=", kWorkerReadyFd);
  std::vector<char*> argv = {const_cast<char*>(vmwp_path.c_str()),
                             config_arg.data(), ready_arg.data(), nullptr};
  pid_t pid = 0;
  rc = posix_spawn(&pid, vmwp_path.c_str(), &actions, &attr, argv.data(),
                   environ);
  if (rc != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot start worker ", vmwp_path, ": ", strerror(rc)));
  }
  // Our copy of the write end must go, or EOF would never arrive when the
  // worker dies.
  return SpawnedWorker{pid, std::move(ready_read)};
}

absl::StatusOr<SpawnedWorker> SpawnSandboxedWorker(
    const std::string& vmwp_path, const std::string& config_path, int kvm_fd,
    int netns_fd, const InheritedFds& extra, sandbox::ZygoteKeeper* zygote) {
  int ready_fds[2];
  if (::pipe2(ready_fds, O_CLOEXEC) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot create ready pipe: ", strerror(errno)));
  }
  base::ScopedFd ready_read(ready_fds[0]);
  base::ScopedFd ready_write(ready_fds[1]);
  int violation_fds[2];
  if (::pipe2(violation_fds, O_CLOEXEC) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot create violation pipe: ", strerror(errno)));
  }
  base::ScopedFd violation_read(violation_fds[0]);
  base::ScopedFd violation_write(violation_fds[1]);
  ::fcntl(violation_read.get(), F_SETFL, O_NONBLOCK);
  int joined_fds[2];
  if (::pipe2(joined_fds, O_CLOEXEC) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot create cgroup-joined pipe: ", strerror(errno)));
  }
  base::ScopedFd joined_read(joined_fds[0]);
  base::ScopedFd joined_write(joined_fds[1]);
  base::ScopedFd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!dev_null) {
    return absl::InternalError(
        absl::StrCat("cannot open /dev/null: ", strerror(errno)));
  }

  sandbox::SpawnRequest request;
  request.binary = vmwp_path;
  request.argv = {vmwp_path, absl::StrCat("--config=", config_path),
                  absl::StrCat("--ready-fd=", kWorkerReadyFd)};
  for (char** e = environ; *e != nullptr; ++e) request.env.push_back(*e);
  request.fds = {{dev_null.get(), STDIN_FILENO},
                 {kvm_fd, kWorkerKvmFd},
                 {ready_write.get(), kWorkerReadyFd},
                 {violation_write.get(), kWorkerViolationFd},
                 {joined_read.get(), kWorkerCgroupJoinedFd}};
  request.fds.insert(request.fds.end(), extra.begin(), extra.end());
  // No network device: an empty net namespace (from the pool when netns_fd
  // is set, else made by clone).
  request.namespace_flags =
      sandbox::NamespaceFlags(/*joins_prepared_netns=*/false);
  request.netns_fd = netns_fd;
  // Not joined in the child: a v1 join waits for an RCU grace period
  // (~13 ms), which vmms overlaps with the worker's start-up instead.
  absl::StatusOr<pid_t> pid = absl::UnavailableError("no zygote");
  bool forked = false;
  if (zygote != nullptr && zygote->disabled().empty()) {
    pid = zygote->Spawn({.argv = request.argv,
                         .fds = request.fds,
                         .namespace_flags = request.namespace_flags,
                         .netns_fd = request.netns_fd});
    forked = pid.ok();
    if (!pid.ok()) {
      spdlog::warn("worker fork server: {}; starting the worker with exec",
                   std::string(pid.status().message()));
    }
  }
  if (!pid.ok()) pid = sandbox::SpawnSandboxed(request);
  if (!pid.ok()) {
    return absl::Status(pid.status().code(),
                        absl::StrCat("cannot start worker ", vmwp_path, ": ",
                                     pid.status().message()));
  }
  // Our copies of the write ends go (they close here), so EOF arrives when
  // the worker dies.
  return SpawnedWorker{*pid, std::move(ready_read), std::move(violation_read),
                       std::move(joined_write), forked};
}

std::string DrainViolationPipe(int fd) {
  std::string bytes;
  char buf[256];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    bytes.append(buf, static_cast<size_t>(n));
    if (bytes.size() > 4096) break;
  }
  return bytes;
}

std::string DescribeWaitStatus(int wait_status) {
  if (WIFSIGNALED(wait_status)) {
    int sig = WTERMSIG(wait_status);
    const char* abbrev = sigabbrev_np(sig);
    return absl::StrCat(
        "worker killed by signal ", sig,
        abbrev != nullptr ? absl::StrCat(" (SIG", abbrev, ")") : "");
  }
  if (WIFEXITED(wait_status)) {
    return absl::StrCat("worker exited with status ", WEXITSTATUS(wait_status));
  }
  return absl::StrCat("worker ended with wait status ", wait_status);
}

}  // namespace vmms
