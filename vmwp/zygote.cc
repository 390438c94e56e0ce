#include "vmwp/zygote.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/base/internal/sysinfo.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/fd_passing.h"
#include "proto/hvstack/internal/worker.pb.h"
#include "proto/hvstack/internal/zygote.pb.h"
#include "spdlog/spdlog.h"

namespace vmwp {
namespace {

using hvstack::internal::ZygoteSpawnReply;
using hvstack::internal::ZygoteSpawnRequest;

constexpr size_t kMaxRequestBytes = 64 * 1024;

// What glibc's fork() does for its child, which a raw clone must do itself:
// the kernel writes the child's tid into the thread's descriptor
// (CLONE_CHILD_SETTID on the address glibc registered with set_tid_address,
// which PR_GET_TID_ADDRESS reads back), and the robust-futex list, which the
// kernel drops for a new process, is registered again.
struct ForkState {
  int* tid_address = nullptr;
  void* robust_head = nullptr;
  size_t robust_len = 0;
};

absl::Status ReadForkState(ForkState& state) {
  if (::prctl(PR_GET_TID_ADDRESS, &state.tid_address, 0, 0, 0) != 0 ||
      state.tid_address == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("PR_GET_TID_ADDRESS: ", std::strerror(errno),
                     " (the kernel needs CONFIG_CHECKPOINT_RESTORE)"));
  }
  if (::syscall(SYS_get_robust_list, 0, &state.robust_head,
                &state.robust_len) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("get_robust_list: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

// The first-use costs every worker would otherwise pay after exec: the time
// zone (absl::FormatTime loads /etc/localtime), the cycle clock's frequency,
// protobuf's descriptors for the worker's config.
void Prewarm() {
  (void)absl::FormatTime(absl::Now());
  (void)absl::base_internal::NominalCPUFrequency();
  hvstack::internal::WorkerConfig config;
  (void)config.ParseFromString(config.SerializeAsString());
}

// In the new worker: descriptors to their numbers, everything else closed.
// Returns false (errno set) on failure.
bool PlaceDescriptors(std::vector<base::ScopedFd>& received,
                      const ZygoteSpawnRequest& request) {
  std::vector<std::pair<int, int>> moves;  // (parked, target)
  int highest = 2;
  for (int i = 0; i < request.fd_numbers_size(); ++i) {
    if (i == request.netns_index()) continue;
    highest = std::max(highest, request.fd_numbers(i));
  }
  // Park every source above every target first, so that no dup2 overwrites a
  // source still to be moved.
  for (int i = 0; i < request.fd_numbers_size(); ++i) {
    if (i == request.netns_index()) continue;
    const int parked = ::fcntl(received[i].get(), F_DUPFD_CLOEXEC, highest + 1);
    if (parked < 0) return false;
    moves.emplace_back(parked, request.fd_numbers(i));
  }
  received.clear();  // the originals (close-on-exec, maybe low numbers)
  std::vector<bool> target(static_cast<size_t>(highest) + 1, false);
  for (const auto& [parked, number] : moves) {
    if (::dup2(parked, number) < 0) return false;  // dup2 clears CLOEXEC
    target[static_cast<size_t>(number)] = true;
  }
  for (int fd = 3; fd <= highest; ++fd) {
    if (!target[static_cast<size_t>(fd)]) ::close(fd);
  }
  return ::syscall(SYS_close_range, highest + 1, ~0U, 0) == 0;
}

// The zygote's own argument strings: the memory /proc/<pid>/cmdline shows.
// vmms starts the zygote with a long filler argument (--zygote-cmdline-room)
// so that a worker can write its own, longer command line there: an exec'd
// worker's is what vmms and tests look for (--config=).
struct ArgumentArea {
  char* start = nullptr;
  size_t size = 0;
};

ArgumentArea FindArgumentArea(int argc, char** argv) {
  ArgumentArea area;
  if (argc < 1) return area;
  area.start = argv[0];
  char* last = argv[argc - 1];
  area.size = static_cast<size_t>(last + std::strlen(last) + 1 - argv[0]);
  return area;
}

std::string JoinedCommandLine(const ZygoteSpawnRequest& request) {
  std::string joined;
  for (const std::string& arg : request.argv()) {
    joined += arg;
    joined.push_back('\0');
  }
  return joined;
}

// Overwrites the argument area: the worker's arguments, then NULs (which
// /proc/<pid>/cmdline shows as empty trailing arguments).
void SetCommandLine(const ArgumentArea& area, const std::string& joined) {
  std::memcpy(area.start, joined.data(), joined.size());
  std::memset(area.start + joined.size(), 0, area.size - joined.size());
}

[[noreturn]] void ChildFailed(const char* step) {
  spdlog::error("zygote child: {} failed: {}", step, std::strerror(errno));
  ::_exit(127);
}

}  // namespace

std::optional<int> ZygoteFdFlag(int argc, char** argv) {
  if (argc < 2) return std::nullopt;
  const char* arg = argv[1];
  constexpr absl::string_view kFlag = "--zygote-fd=";
  if (arg == nullptr || !absl::StartsWith(arg, kFlag)) return std::nullopt;
  int fd = -1;
  if (!absl::SimpleAtoi(absl::string_view(arg).substr(kFlag.size()), &fd) ||
      fd < 0) {
    return std::nullopt;
  }
  return fd;
}

std::optional<std::vector<std::string>> ServeZygote(int control_fd, int argc,
                                                    char** argv) {
  const ArgumentArea area = FindArgumentArea(argc, argv);
  // The zygote ends with vmms; the workers it made do not (the setting is not
  // inherited by a clone).
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (::getppid() == 1) return std::nullopt;  // vmms is gone already
  ForkState fork_state;
  if (absl::Status s = ReadForkState(fork_state); !s.ok()) {
    spdlog::error("vmwp zygote cannot serve: {}", s.ToString());
    return std::nullopt;
  }
  Prewarm();
  while (true) {
    absl::StatusOr<base::ReceivedMessage> message =
        base::ReceiveWithFds(control_fd, kMaxRequestBytes);
    if (!message.ok()) {
      spdlog::error("vmwp zygote: {}", message.status().ToString());
      return std::nullopt;
    }
    if (message->bytes.empty() && message->fds.empty()) return std::nullopt;
    ZygoteSpawnRequest request;
    ZygoteSpawnReply reply;
    if (!request.ParseFromString(message->bytes) || request.argv().empty() ||
        request.fd_numbers_size() != static_cast<int>(message->fds.size()) ||
        request.netns_index() >= request.fd_numbers_size()) {
      reply.set_error(absl::StrCat("malformed spawn request (",
                                   message->fds.size(), " descriptors)"));
    } else if (const std::string cmdline = JoinedCommandLine(request);
               cmdline.size() > area.size) {
      reply.set_error(
          absl::StrCat("the worker's command line (", cmdline.size(),
                       " bytes) does not fit the zygote's (", area.size, ")"));
    } else {
      // Like fork(): the child's tid lands in its thread descriptor, and its
      // stack is a copy of this one.
      const long pid =
          ::syscall(SYS_clone,
                    CLONE_PARENT | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID |
                        request.namespace_flags() | SIGCHLD,
                    nullptr, nullptr, fork_state.tid_address, 0);
      if (pid == 0) {
        ::syscall(SYS_set_robust_list, fork_state.robust_head,
                  fork_state.robust_len);
        ::close(control_fd);
        if (request.netns_index() >= 0 &&
            ::setns(message->fds[request.netns_index()].get(), CLONE_NEWNET) !=
                0) {
          ChildFailed("join net namespace");
        }
        if (!PlaceDescriptors(message->fds, request))
          ChildFailed("descriptors");
        SetCommandLine(area, cmdline);
        return std::vector<std::string>(request.argv().begin(),
                                        request.argv().end());
      }
      if (pid < 0) {
        reply.set_error(absl::StrCat("clone with namespaces 0x",
                                     absl::Hex(request.namespace_flags()),
                                     " failed: ", std::strerror(errno)));
      } else {
        reply.set_pid(static_cast<int32_t>(pid));
      }
    }
    message->fds.clear();
    if (absl::Status s =
            base::SendWithFds(control_fd, reply.SerializeAsString(), {});
        !s.ok()) {
      spdlog::error("vmwp zygote: reply: {}", s.ToString());
      return std::nullopt;
    }
  }
}

}  // namespace vmwp
