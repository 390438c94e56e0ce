#ifndef HVSTACK_VMMS_UNIX_LISTENER_H_
#define HVSTACK_VMMS_UNIX_LISTENER_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/scoped_fd.h"

namespace vmms {

// The kernel's account of a unix-socket client, taken when it connected
// (SO_PEERCRED, SO_PEERGROUPS), plus the socket it came through.
struct UnixPeer {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  std::vector<gid_t> groups;  // Supplementary groups.
  std::string command;        // /proc/<pid>/comm at connect time, if readable.
  std::string socket_path;
  bool read_only = false;
};

// "uid=0 pid=1234 (vmctl)": what the event log and the history record.
std::string DescribePeer(const UnixPeer& peer);

// The connections the UnixListeners accepted, by descriptor number. gRPC names
// a connection handed to it with AddInsecureChannelFromFd "fd:<n>" in
// ServerContext::peer(), which is how a handler finds its caller here. A number
// is reused once gRPC closes the connection; the entry is then replaced by the
// next connection's at accept time (see AccessControl for why a call from the
// closed connection cannot pick up the new entry).
class UnixPeerTable {
 public:
  void Set(int fd, UnixPeer peer);
  std::optional<UnixPeer> Get(int fd);

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<int, UnixPeer> peers_ ABSL_GUARDED_BY(mu_);
};

struct UnixSocketOptions {
  std::string path;
  mode_t mode = 0660;
  // The socket file's group; nullopt leaves it as created (the process's).
  std::optional<gid_t> group;
  // Every caller through this socket is refused any change.
  bool read_only = false;
};

// A listening unix socket whose connections vmms accepts itself, so that each
// one's SO_PEERCRED is known, and then hands to the gRPC server. gRPC 1.51's
// own unix listener exposes no descriptor and no credentials: its peer string
// is the client's (unbound, so empty) address.
class UnixListener {
 public:
  // Creates the socket file with `mode` and `group` and listens. The file never
  // has a wider mode than asked: the socket's inode mode is set before bind
  // (the kernel creates the file with it, minus the umask), the group is set
  // before the mode is completed, and listen() comes last. An existing file at
  // `path` is replaced (the caller holds the state directory's lock).
  static absl::StatusOr<std::unique_ptr<UnixListener>> Listen(
      UnixSocketOptions options, UnixPeerTable* peers);
  ~UnixListener();

  // Starts accepting on a thread of its own; every connection goes to
  // `server`, which must be started.
  void Serve(grpc::Server* server);
  // Stops accepting and removes the socket file. Connections already handed
  // to gRPC are gRPC's. Idempotent.
  void Stop();

  const std::string& path() const { return options_.path; }

 private:
  UnixListener(UnixSocketOptions options, UnixPeerTable* peers)
      : options_(std::move(options)), peers_(peers) {}
  void AcceptLoop(grpc::Server* server);

  const UnixSocketOptions options_;
  UnixPeerTable* const peers_;
  base::ScopedFd listen_fd_;
  base::ScopedFd stop_fd_;  // eventfd: wakes the accept loop to end it.
  std::thread thread_;
};

}  // namespace vmms

#endif  // HVSTACK_VMMS_UNIX_LISTENER_H_
