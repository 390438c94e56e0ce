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

}  // namespace

absl::Status SendFds(int socket, std::string_view token,
                     std::span<const int> fds) {
  if (token.empty() || token.size() > kMaxPassedToken ||
      fds.size() > kMaxPassedFds) {
    return absl::InvalidArgumentError(
        absl::StrCat("fd handoff: token of ", token.size(), " bytes with ",
                     fds.size(), " descriptors (1-", kMaxPassedToken,
                     " bytes, at most ", kMaxPassedFds, " descriptors)"));
  }
  iovec iov{const_cast<char*>(token.data()), token.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)]{};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = ::sendmsg(socket, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return absl::ErrnoToStatus(errno, "fd handoff: sendmsg");
  if (static_cast<size_t>(n) != token.size()) {
    return absl::UnavailableError("fd handoff: short send");
  }
  return absl::OkStatus();
}

absl::StatusOr<PassedFds> ReceiveFds(int socket) {
  PassedFds out;
  char token[kMaxPassedToken];
  iovec iov{token, sizeof(token)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)]{};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return absl::ErrnoToStatus(errno, "fd handoff: recvmsg");
  // Whatever came is ours to close, also on the error paths below.
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr;
       c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      out.fds.emplace_back(fd);
    }
  }
  if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) {
    return absl::InvalidArgumentError(
        "fd handoff: message or descriptors truncated");
  }
  if (n == 0) return absl::UnavailableError("fd handoff: peer closed");
  out.token.assign(token, static_cast<size_t>(n));
  return out;
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
