#include "vmms/access_control.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace vmms {
namespace {

// A name from the request, as it may appear in a message: escaped (it has not
// been validated yet) and bounded.
std::string Quoted(absl::string_view name) {
  constexpr size_t kMax = 64;
  std::string escaped = absl::CHexEscape(name.substr(0, kMax));
  return absl::StrCat("'", escaped, name.size() > kMax ? "...'" : "'");
}

// "fd:<n>" for connections handed over by a UnixListener.
std::optional<int> ConnectionFd(const std::string& peer) {
  absl::string_view rest = peer;
  int fd = -1;
  if (!absl::ConsumePrefix(&rest, "fd:") || !absl::SimpleAtoi(rest, &fd)) {
    return std::nullopt;
  }
  return fd;
}

std::optional<std::string> TlsSubject(grpc::ServerContext* context) {
  std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return std::nullopt;
  std::vector<grpc::string_ref> subject =
      auth->FindPropertyValues(GRPC_X509_SUBJECT_PROPERTY_NAME);
  if (subject.empty()) return std::nullopt;
  return std::string(subject.front().data(), subject.front().size());
}

}  // namespace

std::string AccessControl::Describe(grpc::ServerContext* context) {
  const std::string peer = context->peer();
  if (std::optional<int> fd = ConnectionFd(peer); fd.has_value()) {
    std::optional<UnixPeer> unix_peer = peers_->Get(*fd);
    return unix_peer.has_value() ? DescribePeer(*unix_peer) : "";
  }
  if (std::optional<std::string> subject = TlsSubject(context)) {
    return absl::StrCat("tls subject=", *subject, " (", peer, ")");
  }
  return "";
}

absl::StatusOr<std::string> AccessControl::AuthorizeChange(
    grpc::ServerContext* context, absl::string_view verb,
    absl::string_view object) {
  const std::string what = absl::StrCat(verb, " VM ", Quoted(object));
  const std::string peer = context->peer();
  absl::StatusOr<std::string> result;
  if (std::optional<int> fd = ConnectionFd(peer); fd.has_value()) {
    std::optional<UnixPeer> unix_peer = peers_->Get(*fd);
    result = unix_peer.has_value() ? AuthorizeUnix(*unix_peer, what)
                                   : absl::PermissionDeniedError(absl::StrCat(
                                         "unidentified caller on connection ",
                                         peer, " may not ", what));
  } else if (std::optional<std::string> subject = TlsSubject(context)) {
    result = absl::StrCat("tls subject=", *subject, " (", peer, ")");
  } else {
    result = absl::PermissionDeniedError(
        absl::StrCat("caller ", peer, " may not ", what,
                     ": it is not identified (connect through the unix socket "
                     "or with a TLS client certificate)"));
  }
  // The descriptor number may have been reused by a new connection after this
  // call's connection closed; gRPC cancels a connection's calls before it
  // closes the descriptor, so a call that is not cancelled now read its own
  // connection's entry.
  if (context->IsCancelled()) {
    return absl::CancelledError(
        absl::StrCat("the client went away before ", what));
  }
  // The journal's audit trail: every change asked for, by whom, allowed or
  // not (the event log records only the changes that happened).
  if (result.ok()) {
    spdlog::info("{} by {}", what, *result);
  } else {
    spdlog::warn("refused: {}", std::string(result.status().message()));
  }
  return result;
}

absl::StatusOr<std::string> AccessControl::AuthorizeUnix(
    const UnixPeer& peer, const std::string& what) {
  const std::string who = DescribePeer(peer);
  if (peer.read_only) {
    return absl::PermissionDeniedError(absl::StrCat(
        who, " may not ", what, ": ", peer.socket_path,
        " is vmms's read-only socket; changes go through the main socket "
        "(as root or a member of the socket's group)"));
  }
  // Root, and vmms's own user (a vmms run by a developer as themselves).
  if (peer.uid == 0 || peer.uid == ::geteuid()) return who;
  if (admin_group_.has_value() &&
      (peer.gid == *admin_group_ ||
       std::find(peer.groups.begin(), peer.groups.end(), *admin_group_) !=
           peer.groups.end())) {
    return who;
  }
  std::string rule =
      admin_group_.has_value()
          ? absl::StrCat("only root and members of group ", admin_group_name_,
                         " (gid ", *admin_group_,
                         ") may change VMs; add the user to that group and "
                         "log in again")
          : absl::StrCat("only root and uid ", ::geteuid(),
                         " (vmms's user) may change VMs: vmms runs without a "
                         "socket group (--socket-group, or a group hvstack)");
  return absl::PermissionDeniedError(absl::StrCat(
      "uid ", peer.uid, " (", who, ") may not ", what, ": ", rule));
}

}  // namespace vmms
