#ifndef HVSTACK_BASE_FD_HANDOFF_H_
#define HVSTACK_BASE_FD_HANDOFF_H_

// Handing open descriptors from one process to another over a unix stream
// socket (SCM_RIGHTS), with a token that says what they are for. vmms uses
// it to give a running, sandboxed worker the files of a save (the worker
// opens nothing itself); the worker has bound the listening socket before it
// locked itself down. The messages are base/fd_passing's; this adds the
// token, the listener and the smaller limits a handoff needs.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/scoped_fd.h"

namespace base {

// At most this many descriptors and token bytes per message.
inline constexpr size_t kMaxHandoffFds = 8;
inline constexpr size_t kMaxHandoffToken = 256;

// Sends one message: `token` (1 to kMaxHandoffToken bytes) with `fds`.
absl::Status SendFds(int socket, std::string_view token,
                     std::span<const int> fds);

struct PassedFds {
  std::string token;
  std::vector<ScopedFd> fds;
};
// Receives one message (blocking); descriptors arrive close-on-exec.
absl::StatusOr<PassedFds> ReceiveFds(int socket);

// Connects to the listening unix socket at `path` and sends one message.
absl::Status SendFdsTo(const std::string& path, std::string_view token,
                       std::span<const int> fds);

// A listening unix socket (bound and listening from Create on, so it works
// after a sandbox forbids socket/bind/listen). Take() accepts connections
// until one brings `token`, or `timeout` passes; other connections are
// dropped with what they carried.
class FdHandoffListener {
 public:
  static absl::StatusOr<FdHandoffListener> Create(const std::string& path);
  absl::StatusOr<std::vector<ScopedFd>> Take(std::string_view token,
                                             absl::Duration timeout);
  const std::string& path() const { return path_; }

 private:
  FdHandoffListener(ScopedFd fd, std::string path)
      : fd_(std::move(fd)), path_(std::move(path)) {}
  ScopedFd fd_;
  std::string path_;
};

}  // namespace base

#endif  // HVSTACK_BASE_FD_HANDOFF_H_
