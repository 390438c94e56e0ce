#ifndef HVSTACK_VMMS_ACCESS_CONTROL_H_
#define HVSTACK_VMMS_ACCESS_CONTROL_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "vmms/unix_listener.h"

namespace vmms {

// Who may change what. Reading (GetVm, ListVms, StreamConsole, WatchEvents,
// health, reflection) is open to anyone who can connect: the socket files'
// modes decide that. Every request that changes something asks AuthorizeChange
// first:
//   - unix socket: the caller's uid is 0 or vmms's own, or the connecting
//     process had the admin group as its primary or a supplementary group
//     (SO_PEERCRED and SO_PEERGROUPS, taken at connect), and the socket is not
//     the read-only one;
//   - TLS listener: the client presented a certificate that the configured CA
//     verified (gRPC refuses the handshake otherwise);
//   - anything else (an unidentified connection): refused.
class AccessControl {
 public:
  // `admin_group`: the main socket's group; nullopt means root only.
  AccessControl(UnixPeerTable* peers, std::optional<gid_t> admin_group,
                std::string admin_group_name)
      : peers_(peers),
        admin_group_(admin_group),
        admin_group_name_(std::move(admin_group_name)) {}

  // The caller's identity for the `peer` columns, e.g. "uid=0 pid=1234
  // (vmctl)" or "tls subject=CN=orchestrator (ipv4:127.0.0.1:40000)", when it
  // may `verb` (e.g. "StartVm") the VM `object`; else PERMISSION_DENIED naming
  // the caller, what it asked and how to get access. CANCELLED when the
  // client is gone already.
  absl::StatusOr<std::string> AuthorizeChange(grpc::ServerContext* context,
                                              absl::string_view verb,
                                              absl::string_view object);

  // The caller's identity, allowed or not ("" when unknown).
  std::string Describe(grpc::ServerContext* context);

 private:
  absl::StatusOr<std::string> AuthorizeUnix(const UnixPeer& peer,
                                            const std::string& what);

  UnixPeerTable* const peers_;
  const std::optional<gid_t> admin_group_;
  const std::string admin_group_name_;
};

}  // namespace vmms

#endif  // HVSTACK_VMMS_ACCESS_CONTROL_H_
