#ifndef HVSTACK_VMWP_VSP_IC_IC_FRAMEWORK_H_
#define HVSTACK_VMWP_VSP_IC_IC_FRAMEWORK_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "vmwp/vsp/ic/ic_messages.h"

namespace vsp::ic {

// The versions both sides settled on.
struct IcVersions {
  IcVersion framework{0, 0};
  IcVersion message{0, 0};
};

std::string VersionString(IcVersion v);

// A host request: pipe header, IC header (TRANSACTION | REQUEST), body.
std::vector<uint8_t> BuildIcRequest(uint16_t type, const IcVersions& versions,
                                    std::span<const uint8_t> body);

// The host's NEGOTIATE: every framework version, then every message version
// it speaks, newest first (the guest picks the first of its own list that the
// host also offers).
std::vector<uint8_t> BuildNegotiate(std::span<const IcVersion> framework,
                                    std::span<const IcVersion> message);

// A guest response, checked: big enough for both headers, flagged
// RESPONSE, of the expected message type. `body` views the caller's bytes.
struct IcResponse {
  IcMsgHeader header;
  std::span<const uint8_t> body;
};
absl::StatusOr<IcResponse> ParseIcResponse(std::span<const uint8_t> bytes,
                                           uint16_t expected_type);

// The guest's answer to BuildNegotiate (vmbus_prep_negotiate_resp): one
// framework and one message version, each from the offered lists; counts of
// 0 mean the guest speaks none of them (FailedPrecondition).
absl::StatusOr<IcVersions> ParseNegotiateResponse(
    std::span<const uint8_t> bytes, std::span<const IcVersion> framework,
    std::span<const IcVersion> message);

}  // namespace vsp::ic

#endif  // HVSTACK_VMWP_VSP_IC_IC_FRAMEWORK_H_
