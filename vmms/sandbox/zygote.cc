#include "vmms/sandbox/zygote.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "base/fd_passing.h"
#include "proto/hvstack/internal/zygote.pb.h"
#include "spdlog/spdlog.h"

extern char** environ;

namespace sandbox {
namespace {

constexpr int kZygoteControlFd = 3;
constexpr size_t kMaxReplyBytes = 4096;
// A worker's command line: its path, --config=<state dir>/vms/<uuid>/... and
// --ready-fd=4; a path longer than this leaves that worker to exec.
constexpr size_t kCommandLineRoom = 4096;

}  // namespace

absl::StatusOr<std::unique_ptr<Zygote>> Zygote::Start(
    const std::string& vmwp_path) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return absl::InternalError(
        absl::StrCat("zygote: socketpair: ", std::strerror(errno)));
  }
  base::ScopedFd ours(sv[0]), theirs(sv[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  absl::Cleanup destroy_actions = [&actions] {
    posix_spawn_file_actions_destroy(&actions);
  };
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  absl::Cleanup destroy_attr = [&attr] { posix_spawnattr_destroy(&attr); };
  int rc = posix_spawn_file_actions_adddup2(&actions, theirs.get(),
                                            kZygoteControlFd);
  if (rc == 0)
    rc = posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null",
                                          O_RDONLY, 0);
  if (rc == 0)
    rc = posix_spawn_file_actions_addclosefrom_np(&actions,
                                                  kZygoteControlFd + 1);
  // Workers start from the zygote's signal state: nothing blocked, nothing
  // ignored that a fresh exec would not have.
  sigset_t empty_mask, default_signals;
  sigemptyset(&empty_mask);
  sigemptyset(&default_signals);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD})
    sigaddset(&default_signals, sig);
  if (rc == 0) rc = posix_spawnattr_setsigmask(&attr, &empty_mask);
  if (rc == 0) rc = posix_spawnattr_setsigdefault(&attr, &default_signals);
  if (rc == 0)
    rc = posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("zygote: cannot prepare the spawn: ", strerror(rc)));
  }
  std::string bin = vmwp_path;
  std::string flag = absl::StrCat("--zygote-fd=", kZygoteControlFd);
  // Room for each worker's own command line (vmwp/zygote.h).
  std::string room = absl::StrCat("--zygote-cmdline-room=",
                                  std::string(kCommandLineRoom, '.'));
  char* argv[] = {bin.data(), flag.data(), room.data(), nullptr};
  pid_t pid = 0;
  rc = posix_spawn(&pid, bin.c_str(), &actions, &attr, argv, environ);
  if (rc != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("zygote: cannot start ", vmwp_path, ": ", strerror(rc)));
  }
  return std::unique_ptr<Zygote>(new Zygote(pid, std::move(ours)));
}

Zygote::~Zygote() {
  absl::MutexLock lock(&mu_);
  socket_.reset();  // EOF: the zygote returns and exits
  if (reaped_) return;
  // It holds nothing but its socket; a stopped or stuck one must not hold up
  // vmms.
  ::kill(pid_, SIGKILL);
  int status;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

int Zygote::spawned() const {
  absl::MutexLock lock(&mu_);
  return spawned_;
}

absl::Status Zygote::CheckAlive() {
  absl::MutexLock lock(&mu_);
  if (!reaped_) {
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(pid_, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0) return absl::OkStatus();
    reaped_ = true;
    socket_.reset();
    if (r < 0) {
      end_ = absl::StrCat("cannot be waited for: ", std::strerror(errno));
    } else if (WIFSIGNALED(status)) {
      const char* name = ::sigabbrev_np(WTERMSIG(status));
      end_ = absl::StrCat("killed by signal ", WTERMSIG(status), " (SIG",
                          name != nullptr ? name : "?", ")");
    } else {
      end_ = absl::StrCat("exited with status ", WEXITSTATUS(status));
    }
  }
  return absl::UnavailableError(
      absl::StrCat("worker fork server ", pid_, " ", end_));
}

absl::StatusOr<std::string> Zygote::Exchange(std::string_view bytes,
                                             absl::Span<const int> fds,
                                             int32_t* pid) {
  if (!socket_) {
    return absl::UnavailableError(
        absl::StrCat("worker fork server ", pid_, " is gone"));
  }
  if (absl::Status s = base::SendWithFds(socket_.get(), bytes, fds); !s.ok()) {
    socket_.reset();
    return absl::UnavailableError(
        absl::StrCat("worker fork server ", pid_, ": ", s.message()));
  }
  absl::StatusOr<base::ReceivedMessage> answer =
      base::ReceiveWithFds(socket_.get(), kMaxReplyBytes);
  hvstack::internal::ZygoteSpawnReply reply;
  if (!answer.ok() || answer->bytes.empty() ||
      !reply.ParseFromString(answer->bytes)) {
    socket_.reset();
    return absl::UnavailableError(absl::StrCat(
        "worker fork server ", pid_, " did not answer",
        answer.ok() ? "" : absl::StrCat(": ", answer.status().message())));
  }
  if (reply.pid() > 0) ++spawned_;
  *pid = reply.pid();
  return reply.error();
}

absl::StatusOr<std::string> Zygote::RawRequestForTesting(
    std::string_view bytes, absl::Span<const int> fds) {
  absl::MutexLock lock(&mu_);
  int32_t pid = 0;
  return Exchange(bytes, fds, &pid);
}

absl::StatusOr<pid_t> Zygote::Spawn(const Request& request) {
  hvstack::internal::ZygoteSpawnRequest message;
  for (const std::string& arg : request.argv) message.add_argv(arg);
  std::vector<int> fds;
  for (const auto& [fd, number] : request.fds) {
    fds.push_back(fd);
    message.add_fd_numbers(number);
  }
  int flags = request.namespace_flags;
  message.set_netns_index(-1);
  if (request.netns_fd >= 0) {
    message.set_netns_index(static_cast<int32_t>(fds.size()));
    fds.push_back(request.netns_fd);
    message.add_fd_numbers(-1);
    flags &= ~CLONE_NEWNET;
  }
  message.set_namespace_flags(flags);

  absl::MutexLock lock(&mu_);
  int32_t pid = 0;
  absl::StatusOr<std::string> error =
      Exchange(message.SerializeAsString(), fds, &pid);
  if (!error.ok()) return error.status();
  if (pid <= 0) {
    return absl::InternalError(
        absl::StrCat("worker fork server ", pid_, ": ", *error));
  }
  return static_cast<pid_t>(pid);
}

absl::Status ZygoteKeeper::Start() {
  absl::MutexLock lock(&mu_);
  if (zygote_ != nullptr || !disabled_.empty()) return absl::OkStatus();
  return StartLocked();
}

absl::Status ZygoteKeeper::StartLocked() {
  absl::StatusOr<std::unique_ptr<Zygote>> started = Zygote::Start(vmwp_path_);
  if (!started.ok()) {
    disabled_ = std::string(started.status().message());
    spdlog::error(
        "worker fork server cannot start ({}); every worker is exec'd from "
        "now on",
        disabled_);
    return started.status();
  }
  zygote_ = *std::move(started);
  ++started_;
  spdlog::info("worker fork server {} started ({})", zygote_->pid(),
               vmwp_path_);
  return absl::OkStatus();
}

void ZygoteKeeper::ForgetDeadLocked(const absl::Status& why) {
  const bool served = zygote_->spawned() > 0;
  zygote_.reset();
  if (!served) {
    disabled_ = absl::StrCat(why.message(), " before it made a single worker");
    spdlog::error("{}; every worker is exec'd from now on", disabled_);
  } else {
    spdlog::warn("{}; the next start gets a new one",
                 std::string(why.message()));
  }
}

absl::StatusOr<pid_t> ZygoteKeeper::Spawn(const Zygote::Request& request) {
  absl::MutexLock lock(&mu_);
  if (!disabled_.empty()) {
    return absl::UnavailableError(
        absl::StrCat("worker fork server off: ", disabled_));
  }
  if (zygote_ != nullptr) {
    if (absl::Status alive = zygote_->CheckAlive(); !alive.ok()) {
      ForgetDeadLocked(alive);
      if (!disabled_.empty()) return alive;
    }
  }
  if (zygote_ == nullptr) {
    if (absl::Status s = StartLocked(); !s.ok()) {
      return absl::UnavailableError(s.message());
    }
  }
  absl::StatusOr<pid_t> pid = zygote_->Spawn(request);
  if (pid.status().code() == absl::StatusCode::kUnavailable) {
    // Gone in the middle of the request: this worker is exec'd; how the
    // zygote ended is logged once it is reaped.
    absl::Status alive = zygote_->CheckAlive();
    for (int i = 0; i < 100 && alive.ok(); ++i) {
      ::usleep(1000);
      alive = zygote_->CheckAlive();
    }
    ForgetDeadLocked(alive.ok() ? pid.status() : alive);
  }
  return pid;
}

int ZygoteKeeper::restarts() const {
  absl::MutexLock lock(&mu_);
  return started_ > 0 ? started_ - 1 : 0;
}

std::string ZygoteKeeper::disabled() const {
  absl::MutexLock lock(&mu_);
  return disabled_;
}

pid_t ZygoteKeeper::pid() const {
  absl::MutexLock lock(&mu_);
  return zygote_ != nullptr ? zygote_->pid() : 0;
}

}  // namespace sandbox
