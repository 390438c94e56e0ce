#include "vmms/qemu_process.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace vmms {
namespace {

constexpr size_t kMaxOutput = 1 << 20;

// The child's failure, written to the error pipe (async-signal-safe).
[[noreturn]] void ChildFail(int error_fd, const char* step) {
  const int err = errno;
  (void)!::write(error_fd, &err, sizeof(err));
  (void)!::write(error_fd, step, std::strlen(step));
  ::_exit(127);
}

// Writes `value` in decimal into `out` (at least 12 bytes), NUL-terminated.
void FormatPid(pid_t value, char* out) {
  char digits[16];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value > 0 && n < 15);
  for (int i = 0; i < n; ++i) out[i] = digits[n - 1 - i];
  out[n] = '\0';
}

}  // namespace

absl::StatusOr<std::string> LocateQemuTool(const std::string& name) {
  std::string override_var =
      name == "qemu-img" ? "HVSTACK_QEMU_IMG" : "HVSTACK_QEMU_NBD";
  if (const char* o = std::getenv(override_var.c_str()); o != nullptr && *o)
    return std::string(o);
  const char* path = std::getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path != nullptr ? path : "", ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/", name);
    if (candidate.front() == '/' && ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
  }
  std::string fallback = absl::StrCat("/usr/bin/", name);
  if (::access(fallback.c_str(), X_OK) == 0) return fallback;
  return absl::FailedPreconditionError(
      absl::StrCat(name,
                   " is not installed: qcow2/VHDX disks and image checks need "
                   "it (Debian package qemu-utils; deploy/install-deps.sh)"));
}

absl::StatusOr<pid_t> SpawnConfinedTool(const ToolSpawn& spawn) {
  if (spawn.argv.empty()) return absl::InvalidArgumentError("no argv");
  // Everything the child needs is prepared here: after fork, a multithreaded
  // parent's child may only make async-signal-safe calls.
  std::vector<std::string> env = spawn.env;
  size_t listen_pid_index = env.size();
  if (spawn.socket_activation) env.push_back("LISTEN_PID=000000000000");
  std::vector<char*> argv_ptrs, env_ptrs;
  for (const std::string& a : spawn.argv)
    argv_ptrs.push_back(const_cast<char*>(a.c_str()));
  argv_ptrs.push_back(nullptr);
  for (std::string& e : env) env_ptrs.push_back(e.data());
  env_ptrs.push_back(nullptr);
  char* listen_pid_value =
      spawn.socket_activation ? env[listen_pid_index].data() + 11 : nullptr;

  int error_pipe[2];
  if (::pipe2(error_pipe, O_CLOEXEC) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot create a pipe: ", std::strerror(errno)));
  }
  base::ScopedFd error_read(error_pipe[0]), error_write(error_pipe[1]);
  base::ScopedFd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!dev_null) {
    return absl::InternalError(
        absl::StrCat("cannot open /dev/null: ", std::strerror(errno)));
  }
  // Sources are moved above every target first, so that dup2 onto a target
  // never overwrites a source that happens to have that number.
  int max_target = 2;
  for (const auto& [source, target] : spawn.fds)
    max_target = std::max(max_target, target);
  const int park_base = std::max(max_target + 1, 64);
  std::vector<int> sources;
  sources.reserve(spawn.fds.size());
  const int err_fd = error_write.get();
  const int null_fd = dev_null.get();

  const pid_t pid = ::fork();
  if (pid < 0) {
    return absl::InternalError(
        absl::StrCat("cannot fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    // The child. Raw system calls only.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig = 1; sig < NSIG; ++sig) {
      if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, SIG_DFL);
    }
    if (::setsid() < 0) ChildFail(err_fd, "setsid");
    // The error pipe moves above the targets too.
    const int err = ::fcntl(err_fd, F_DUPFD_CLOEXEC, park_base + 256);
    if (err < 0) ChildFail(err_fd, "fcntl");
    int parked[64];
    const size_t count = spawn.fds.size() < 64 ? spawn.fds.size() : 64;
    for (size_t i = 0; i < count; ++i) {
      parked[i] = ::fcntl(spawn.fds[i].first, F_DUPFD_CLOEXEC, park_base);
      if (parked[i] < 0) ChildFail(err, "fcntl");
    }
    if (::dup2(null_fd, STDIN_FILENO) < 0) ChildFail(err, "dup2");
    for (size_t i = 0; i < count; ++i) {
      if (::dup2(parked[i], spawn.fds[i].second) < 0) ChildFail(err, "dup2");
    }
    // Everything above stderr that is not a target is closed on exec.
    for (int fd = 3; fd <= max_target; ++fd) {
      bool keep = false;
      for (size_t i = 0; i < count; ++i) keep |= spawn.fds[i].second == fd;
      if (!keep) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    if (::syscall(SYS_close_range, max_target + 1, ~0U, CLOSE_RANGE_CLOEXEC) !=
        0) {
      ChildFail(err, "close_range");
    }
    if (spawn.new_namespaces && ::unshare(CLONE_NEWIPC | CLONE_NEWUTS) != 0) {
      ChildFail(err, "unshare");
    }
    for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
      if (cap == CAP_DAC_OVERRIDE || cap == CAP_DAC_READ_SEARCH) continue;
      if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
        ChildFail(err, "PR_CAPBSET_DROP");
    }
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
      ChildFail(err, "PR_SET_NO_NEW_PRIVS");
    if (listen_pid_value != nullptr) FormatPid(::getpid(), listen_pid_value);
    ::execve(argv_ptrs[0], argv_ptrs.data(), env_ptrs.data());
    ChildFail(err, "execve");
  }
  error_write.reset();
  // EOF: the exec succeeded (the pipe is close-on-exec).
  char buf[128];
  ssize_t n;
  do {
    n = ::read(error_read.get(), buf, sizeof(buf));
  } while (n < 0 && errno == EINTR);
  if (n >= static_cast<ssize_t>(sizeof(int))) {
    int err;
    std::memcpy(&err, buf, sizeof(err));
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot start ", spawn.argv[0], ": ",
        std::string(buf + sizeof(int), static_cast<size_t>(n) - sizeof(int)),
        ": ", std::strerror(err)));
  }
  return pid;
}

absl::StatusOr<ToolResult> RunConfinedTool(const std::vector<std::string>& argv,
                                           absl::Duration timeout) {
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot create a pipe: ", std::strerror(errno)));
  }
  base::ScopedFd out_read(out_pipe[0]), out_write(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot create a pipe: ", std::strerror(errno)));
  }
  base::ScopedFd err_read(err_pipe[0]), err_write(err_pipe[1]);
  ToolSpawn spawn;
  spawn.argv = argv;
  spawn.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"};
  spawn.fds = {{out_write.get(), STDOUT_FILENO},
               {err_write.get(), STDERR_FILENO}};
  absl::StatusOr<pid_t> pid = SpawnConfinedTool(spawn);
  if (!pid.ok()) return pid.status();
  out_write.reset();
  err_write.reset();

  ToolResult result;
  const absl::Time deadline = absl::Now() + timeout;
  bool out_open = true, err_open = true, timed_out = false;
  while (out_open || err_open) {
    pollfd fds[2] = {{out_open ? out_read.get() : -1, POLLIN, 0},
                     {err_open ? err_read.get() : -1, POLLIN, 0}};
    const int64_t left_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left_ms <= 0) {
      timed_out = true;
      break;
    }
    const int r = ::poll(fds, 2, static_cast<int>(left_ms));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].revents == 0) continue;
      char buf[65536];
      const ssize_t got = ::read(fds[i].fd, buf, sizeof(buf));
      if (got < 0 && errno == EINTR) continue;
      std::string& sink = i == 0 ? result.out : result.err;
      if (got <= 0) {
        (i == 0 ? out_open : err_open) = false;
        continue;
      }
      if (sink.size() < kMaxOutput)
        sink.append(buf, std::min<size_t>(got, kMaxOutput - sink.size()));
    }
  }
  if (timed_out) ::kill(*pid, SIGKILL);
  while (::waitpid(*pid, &result.wait_status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return absl::DeadlineExceededError(
        absl::StrCat(argv[0], " did not finish within ",
                     absl::FormatDuration(timeout), " (killed)"));
  }
  return result;
}

}  // namespace vmms
