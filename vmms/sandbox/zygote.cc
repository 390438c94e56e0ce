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

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "base/fd_passing.h"
#include "proto/hvstack/internal/zygote.pb.h"

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
  {
    absl::MutexLock lock(&mu_);
    socket_.reset();  // EOF: the zygote returns and exits
  }
  int status;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
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
  if (!socket_) return absl::UnavailableError("zygote: gone");
  if (absl::Status s =
          base::SendWithFds(socket_.get(), message.SerializeAsString(), fds);
      !s.ok()) {
    socket_.reset();
    return absl::UnavailableError(
        absl::StrCat("zygote ", pid_, ": ", s.message()));
  }
  absl::StatusOr<base::ReceivedMessage> answer =
      base::ReceiveWithFds(socket_.get(), kMaxReplyBytes);
  hvstack::internal::ZygoteSpawnReply reply;
  if (!answer.ok() || answer->bytes.empty() ||
      !reply.ParseFromString(answer->bytes)) {
    socket_.reset();
    return absl::UnavailableError(absl::StrCat(
        "zygote ", pid_, " did not answer",
        answer.ok() ? "" : absl::StrCat(": ", answer.status().message())));
  }
  if (reply.pid() <= 0) {
    return absl::InternalError(absl::StrCat("zygote: ", reply.error()));
  }
  return static_cast<pid_t>(reply.pid());
}

}  // namespace sandbox
