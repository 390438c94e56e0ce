#include "cli/call_support.h"

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "cli/exit_codes.h"

namespace vmctl {

namespace {
// Written by main before any call, read by the calls: no lock needed.
std::optional<std::chrono::seconds> request_timeout;
}  // namespace

void OverrideRequestTimeout(std::optional<std::chrono::seconds> timeout) {
  request_timeout = timeout;
}

void SetDeadline(grpc::ClientContext& context, std::chrono::seconds timeout) {
  context.set_deadline(std::chrono::system_clock::now() +
                       request_timeout.value_or(timeout));
}

int Fail(Session& session, const grpc::Status& status) {
  std::string message = status.error_message();
  // vmms answers UNAVAILABLE itself when a worker or libvirt cannot be
  // reached; its message says so, and the channel is connected.
  const bool vmms_answered =
      session.channel != nullptr &&
      session.channel->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY;
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE && !vmms_answered) {
    message = absl::StrCat(
        "cannot reach vmms at unix:", session.socket_path,
        " (is vmms running? use --socket or $HVSTACK_SOCKET): ", message);
  }
  *session.err << "vmctl: " << StatusCodeName(status.error_code()) << ": "
               << message << "\n";
  return ExitCodeFor(status.error_code());
}

}  // namespace vmctl
