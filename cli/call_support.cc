#include "cli/call_support.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "cli/exit_codes.h"

namespace vmctl {

void SetDeadline(grpc::ClientContext& context, std::chrono::seconds timeout) {
  context.set_deadline(std::chrono::system_clock::now() + timeout);
}

int Fail(Session& session, const grpc::Status& status) {
  std::string message = status.error_message();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    message = absl::StrCat(
        "cannot reach vmms at unix:", session.socket_path,
        " (is vmms running? use --socket or $HVSTACK_SOCKET): ", message);
  }
  *session.err << "vmctl: " << StatusCodeName(status.error_code()) << ": "
               << message << "\n";
  return ExitCodeFor(status.error_code());
}

}  // namespace vmctl
