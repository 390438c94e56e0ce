#include "base/fd_handoff.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/types/span.h"
#include "base/fd_passing.h"

namespace base {
namespace {

absl::StatusOr<sockaddr_un> Address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unix socket path \"", path, "\" must be 1 to ",
                     sizeof(addr.sun_path) - 1, " bytes"));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

absl::Status Prefixed(const absl::Status& status) {
  return absl::Status(status.code(),
                      absl::StrCat("fd handoff: ", status.message()));
}

}  // namespace

absl::Status SendFds(int socket, std::string_view token,
                     std::span<const int> fds) {
  if (token.empty() || token.size() > kMaxHandoffToken ||
      fds.size() > kMaxHandoffFds) {
    return absl::InvalidArgumentError(
        absl::StrCat("fd handoff: token of ", token.size(), " bytes with ",
                     fds.size(), " descriptors (1-", kMaxHandoffToken,
                     " bytes, at most ", kMaxHandoffFds, " descriptors)"));
  }
  absl::Status sent =
      SendWithFds(socket, token, absl::MakeConstSpan(fds.data(), fds.size()));
  if (!sent.ok()) return Prefixed(sent);
  return absl::OkStatus();
}

absl::StatusOr<PassedFds> ReceiveFds(int socket) {
  absl::StatusOr<ReceivedMessage> got =
      ReceiveWithFds(socket, kMaxHandoffToken);
  if (!got.ok()) return Prefixed(got.status());
  if (got->bytes.empty()) {
    return absl::UnavailableError("fd handoff: peer closed");
  }
  if (got->fds.size() > kMaxHandoffFds) {
    return absl::InvalidArgumentError(
        absl::StrCat("fd handoff: ", got->fds.size(), " descriptors (at most ",
                     kMaxHandoffFds, ")"));
  }
  return PassedFds{std::move(got->bytes), std::move(got->fds)};
}

absl::Status SendFdsTo(const std::string& path, std::string_view token,
                       std::span<const int> fds) {
  absl::StatusOr<sockaddr_un> addr = Address(path);
  if (!addr.ok()) return addr.status();
  ScopedFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (s.get() < 0) return absl::ErrnoToStatus(errno, "fd handoff: socket");
  if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&*addr),
                sizeof(*addr)) < 0) {
    return absl::ErrnoToStatus(errno,
                               absl::StrCat("fd handoff: connect to ", path));
  }
  return SendFds(s.get(), token, fds);
}

absl::StatusOr<FdHandoffListener> FdHandoffListener::Create(
    const std::string& path) {
  absl::StatusOr<sockaddr_un> addr = Address(path);
  if (!addr.ok()) return addr.status();
  ScopedFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (s.get() < 0) return absl::ErrnoToStatus(errno, "fd handoff: socket");
  ::unlink(path.c_str());
  // Only the owner (and root: vmms) may connect.
  const mode_t old = ::umask(0177);
  const int r =
      ::bind(s.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr));
  ::umask(old);
  if (r < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("fd handoff: bind ", path));
  }
  if (::listen(s.get(), 4) < 0) {
    return absl::ErrnoToStatus(errno, "fd handoff: listen");
  }
  return FdHandoffListener(std::move(s), path);
}

absl::StatusOr<std::vector<ScopedFd>> FdHandoffListener::Take(
    std::string_view token, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    ScopedFd conn(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (conn.get() < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        return absl::ErrnoToStatus(errno, "fd handoff: accept");
      }
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        return absl::DeadlineExceededError(
            "fd handoff: no descriptors arrived in time");
      }
      pollfd p{fd_.get(), POLLIN, 0};
      (void)::poll(&p, 1,
                   static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
      continue;
    }
    // The connection is blocking by default (accept4 without NONBLOCK);
    // the sender has written its one message before we got here or will
    // shortly.
    absl::StatusOr<PassedFds> got = ReceiveFds(conn.get());
    if (got.ok() && got->token == token) return std::move(got->fds);
  }
}

}  // namespace base
