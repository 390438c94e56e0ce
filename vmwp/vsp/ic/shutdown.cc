#include "vmwp/vsp/ic/shutdown.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "vmwp/vsp/ic/utf16.h"

namespace vsp::ic {

std::vector<uint8_t> BuildShutdownRequest(const ShutdownRequest& request,
                                          const IcVersions& versions) {
  ShutdownData data{};
  data.reason_code = request.reason_code;
  data.timeout_seconds = request.timeout_seconds;
  data.flags = static_cast<uint32_t>(request.kind) |
               (request.force ? kShutdownFlagForce : 0);
  EncodeUtf16(request.message, data.display_message,
              sizeof(data.display_message));
  return BuildIcRequest(
      kIcShutdown, versions,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&data),
                               sizeof(data)));
}

absl::Status ParseShutdownResponse(std::span<const uint8_t> bytes) {
  absl::StatusOr<IcResponse> r = ParseIcResponse(bytes, kIcShutdown);
  if (!r.ok()) return r.status();
  if (r->header.status != kHvSOk) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "the guest refused the shutdown request (status 0x%08x)",
        r->header.status));
  }
  return absl::OkStatus();
}

}  // namespace vsp::ic
