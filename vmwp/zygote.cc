#include "vmwp/zygote.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
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
// A worker's descriptor numbers: 0..255, as vmms/sandbox/spawn.cc's exec path
// allows (disks at 100 + i, network adapters at 40 + i).
constexpr int kMaxWorkerFd = 255;
// The only clone flags a request may add: new namespaces. Anything else
// (CLONE_VM, CLONE_THREAD, CLONE_FILES, a user namespace, ...) would make
// something other than a sandboxed worker.
constexpr int kAllowedNamespaces = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC |
                                   CLONE_NEWUTS | CLONE_NEWNET |
                                   CLONE_NEWCGROUP;

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

// Why `request` (with `fds` received) cannot become a worker; empty if it can.
// The zygote is root and unconfined: it turns only well-formed requests into
// workers and says what is wrong with any other, then serves the next.
std::string Refusal(const ZygoteSpawnRequest& request,
                    const std::vector<base::ScopedFd>& fds) {
  if (request.argv().empty()) return "no command line (argv is empty)";
  for (const std::string& arg : request.argv()) {
    if (arg.find('\0') != std::string::npos) {
      return "an argument contains a NUL byte";
    }
  }
  if (request.fd_numbers_size() != static_cast<int>(fds.size())) {
    return absl::StrCat(request.fd_numbers_size(), " descriptor numbers for ",
                        fds.size(), " passed descriptors");
  }
  if (request.netns_index() < -1 ||
      request.netns_index() >= request.fd_numbers_size()) {
    return absl::StrCat("net namespace index ", request.netns_index(),
                        " outside the ", fds.size(), " passed descriptors");
  }
  std::vector<bool> taken(kMaxWorkerFd + 1, false);
  for (int i = 0; i < request.fd_numbers_size(); ++i) {
    if (i == request.netns_index()) continue;
    const int number = request.fd_numbers(i);
    if (number < 0 || number > kMaxWorkerFd) {
      return absl::StrCat("descriptor number ", number, " outside 0..",
                          kMaxWorkerFd);
    }
    if (taken[static_cast<size_t>(number)]) {
      return absl::StrCat("descriptor number ", number, " given twice");
    }
    taken[static_cast<size_t>(number)] = true;
  }
  if ((request.namespace_flags() & ~kAllowedNamespaces) != 0) {
    return absl::StrCat(
        "clone flags 0x",
        absl::Hex(request.namespace_flags() & ~kAllowedNamespaces),
        " are not namespaces a worker may get");
  }
  if (request.netns_index() >= 0) {
    if ((request.namespace_flags() & CLONE_NEWNET) != 0) {
      return "both a net namespace to join and CLONE_NEWNET";
    }
    const int type = ::ioctl(
        fds[static_cast<size_t>(request.netns_index())].get(), NS_GET_NSTYPE);
    if (type != CLONE_NEWNET) {
      return absl::StrCat("descriptor ", request.netns_index(),
                          " is not a net namespace");
    }
  }
  return "";
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
  // The zygote ends when vmms closes its end of the socket, which vmms's
  // death does too. (Not PR_SET_PDEATHSIG: that follows the vmms *thread*
  // that started the zygote, and gRPC's threads come and go.)
  ForkState fork_state;
  if (absl::Status s = ReadForkState(fork_state); !s.ok()) {
    spdlog::error("vmwp zygote cannot serve: {}", s.ToString());
    return std::nullopt;
  }
  Prewarm();
  while (true) {
    absl::StatusOr<base::ReceivedMessage> message =
        base::ReceiveWithFds(control_fd, kMaxRequestBytes);
    ZygoteSpawnRequest request;
    ZygoteSpawnReply reply;
    std::string refusal;
    if (!message.ok()) {
      if (message.status().code() != absl::StatusCode::kInvalidArgument) {
        spdlog::error("vmwp zygote: {}", message.status().ToString());
        return std::nullopt;
      }
      // Too long: refused, and the next message is read whole.
      refusal = std::string(message.status().message());
    } else if (message->bytes.empty() && message->fds.empty()) {
      return std::nullopt;  // vmms closed the socket
    } else if (!request.ParseFromString(message->bytes)) {
      refusal = absl::StrCat("not a spawn request (", message->bytes.size(),
                             " bytes)");
    } else {
      refusal = Refusal(request, message->fds);
    }
    if (!refusal.empty()) {
      reply.set_error(absl::StrCat("refused: ", refusal));
      spdlog::warn("vmwp zygote: spawn request {}", reply.error());
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
    if (message.ok()) message->fds.clear();
    if (absl::Status s =
            base::SendWithFds(control_fd, reply.SerializeAsString(), {});
        !s.ok()) {
      spdlog::error("vmwp zygote: reply: {}", s.ToString());
      return std::nullopt;
    }
  }
}

}  // namespace vmwp
