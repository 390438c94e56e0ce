#include "vmms/unix_listener.h"

#include <fcntl.h>
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace vmms {
namespace {

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::FailedPreconditionError(
      absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

std::string CommandOf(pid_t pid) {
  std::ifstream comm(absl::StrCat("/proc/", pid, "/comm"));
  std::string name;
  std::getline(comm, name);
  return name;
}

// The client's credentials as the kernel recorded them at connect().
std::optional<UnixPeer> PeerOf(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return std::nullopt;
  }
  UnixPeer peer;
  peer.uid = cred.uid;
  peer.gid = cred.gid;
  peer.pid = cred.pid;
  std::vector<gid_t> groups(64);
  while (true) {
    len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
      groups.resize(len / sizeof(gid_t));
      break;
    }
    // ERANGE: `len` now holds the size needed.
    if (errno != ERANGE || len <= groups.size() * sizeof(gid_t)) {
      groups.clear();
      break;
    }
    groups.resize(len / sizeof(gid_t));
  }
  peer.groups = std::move(groups);
  peer.command = CommandOf(cred.pid);
  return peer;
}

}  // namespace

std::string DescribePeer(const UnixPeer& peer) {
  std::string out = absl::StrCat("uid=", peer.uid, " pid=", peer.pid);
  if (!peer.command.empty()) absl::StrAppend(&out, " (", peer.command, ")");
  return out;
}

void UnixPeerTable::Set(int fd, UnixPeer peer) {
  absl::MutexLock lock(&mu_);
  peers_[fd] = std::move(peer);
}

std::optional<UnixPeer> UnixPeerTable::Get(int fd) {
  absl::MutexLock lock(&mu_);
  auto it = peers_.find(fd);
  if (it == peers_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<std::unique_ptr<UnixListener>> UnixListener::Listen(
    UnixSocketOptions options, UnixPeerTable* peers) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (options.path.empty() || options.path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "socket path '", options.path, "' is ", options.path.size(),
        " bytes; a unix socket path must be 1 to ", sizeof(addr.sun_path) - 1,
        " bytes"));
  }
  std::memcpy(addr.sun_path, options.path.data(), options.path.size());
  auto listener =
      std::unique_ptr<UnixListener>(new UnixListener(options, peers));
  const std::string& path = options.path;
  listener->listen_fd_.reset(
      ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listener->listen_fd_) return Errno("cannot create socket", path);
  int fd = listener->listen_fd_.get();
  // bind() creates the file with the socket inode's mode minus the umask, so
  // the file is never wider than `mode`, not even for an instant.
  if (::fchmod(fd, options.mode) != 0)
    return Errno("cannot set the mode of socket", path);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return Errno("cannot remove stale socket", path);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    return Errno("cannot bind", path);
  // Group first, then the full mode (which the umask may have narrowed):
  // every intermediate state is narrower than the final one.
  if (options.group.has_value() &&
      ::chown(path.c_str(), static_cast<uid_t>(-1), *options.group) != 0) {
    return Errno(absl::StrCat("cannot give group ", *options.group, " to"),
                 path);
  }
  if (::chmod(path.c_str(), options.mode) != 0)
    return Errno("cannot set the mode of", path);
  if (::listen(fd, SOMAXCONN) != 0) return Errno("cannot listen on", path);
  listener->stop_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!listener->stop_fd_) return Errno("cannot create an eventfd for", path);
  return listener;
}

UnixListener::~UnixListener() { Stop(); }

void UnixListener::Serve(grpc::Server* server) {
  thread_ = std::thread([this, server] { AcceptLoop(server); });
}

void UnixListener::Stop() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    if (::write(stop_fd_.get(), &one, sizeof(one)) < 0) {
      spdlog::warn("cannot wake the accept loop of {}: {}", options_.path,
                   std::strerror(errno));
    }
    thread_.join();
  }
  if (listen_fd_) {
    listen_fd_.reset();
    ::unlink(options_.path.c_str());
  }
}

void UnixListener::AcceptLoop(grpc::Server* server) {
  pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
  while (true) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("poll on {} failed: {}; no longer accepting", options_.path,
                    std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    // Non-blocking: gRPC's endpoint expects it.
    int conn = ::accept4(listen_fd_.get(), nullptr, nullptr,
                         SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (conn < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) continue;
      spdlog::warn("accept on {} failed: {}", options_.path,
                   std::strerror(errno));
      if (errno == EMFILE || errno == ENFILE) {
        // Out of descriptors: back off instead of spinning.
        ::poll(nullptr, 0, 100);
      }
      continue;
    }
    std::optional<UnixPeer> peer = PeerOf(conn);
    if (!peer.has_value()) {
      spdlog::warn("no credentials for a connection on {}: {}; closed",
                   options_.path, std::strerror(errno));
      ::close(conn);
      continue;
    }
    peer->socket_path = options_.path;
    peer->read_only = options_.read_only;
    // Before gRPC sees the connection: no call on it can come first.
    peers_->Set(conn, *std::move(peer));
    grpc::AddInsecureChannelFromFd(server, conn);  // gRPC owns `conn` now.
  }
}

}  // namespace vmms
