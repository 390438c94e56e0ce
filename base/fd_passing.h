#ifndef HVSTACK_BASE_FD_PASSING_H_
#define HVSTACK_BASE_FD_PASSING_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "base/scoped_fd.h"

namespace base {

// The most descriptors one message may carry (the kernel's SCM_MAX_FD).
inline constexpr size_t kMaxPassedFds = 253;

// Sends `bytes` and `fds` (SCM_RIGHTS) as one message on a connected unix
// socket (SOCK_SEQPACKET keeps message boundaries). The caller keeps its
// descriptors.
absl::Status SendWithFds(int socket, std::string_view bytes,
                         absl::Span<const int> fds);

struct ReceivedMessage {
  std::string bytes;          // empty with no fds: the peer closed
  std::vector<ScopedFd> fds;  // close-on-exec
};

// Receives one message of at most `max_bytes` with its descriptors. A
// truncated message (bytes or descriptors) is an error and its descriptors
// are closed.
absl::StatusOr<ReceivedMessage> ReceiveWithFds(int socket, size_t max_bytes);

}  // namespace base

#endif  // HVSTACK_BASE_FD_PASSING_H_
