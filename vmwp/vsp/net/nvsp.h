#ifndef HVSTACK_VMWP_VSP_NET_NVSP_H_
#define HVSTACK_VMWP_VSP_NET_NVSP_H_

// Parsing and building NVSP messages (layouts in nvsp_protocol.h). Every
// value comes from guest memory and is checked here before anyone uses it.

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "vmwp/vsp/net/nvsp_protocol.h"

namespace vsp::net {

// An NVSP message as received: its type and the bytes after the type.
struct NvspView {
  uint32_t type = 0;
  std::span<const uint8_t> body;
};

// Splits `bytes` (a VMBus packet's payload) into type and body: fails when
// there are fewer than 4 bytes, or fewer body bytes than the fixed part of a
// message type the host accepts from a guest (see MinGuestBodySize).
absl::StatusOr<NvspView> ParseNvsp(std::span<const uint8_t> bytes);

// The fixed body size of a guest-to-host message type, or 0 for types with
// no body the host reads (and for types the host does not accept).
size_t MinGuestBodySize(uint32_t type);

// "INIT", "SEND_RNDIS_PKT", ... or "type N".
std::string NvspTypeName(uint32_t type);

// A message's fixed body, copied out (the caller checked the size through
// ParseNvsp; a short body is an error here too).
template <typename T>
absl::StatusOr<T> NvspBody(const NvspView& view) {
  if (view.body.size() < sizeof(T)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("NVSP %s: %d body bytes, need %d",
                        NvspTypeName(view.type), view.body.size(), sizeof(T)));
  }
  T out;
  std::memcpy(&out, view.body.data(), sizeof(T));
  return out;
}

// A full 40-byte nvsp_message of `type` with `body` at its start (the rest
// zero), as Linux sends and expects them.
template <typename T>
NvspMessage MakeNvsp(uint32_t type, const T& body) {
  static_assert(sizeof(T) <= kNvspBodySize);
  NvspMessage m{};
  m.type = type;
  std::memcpy(m.body, &body, sizeof(T));
  return m;
}

inline std::span<const uint8_t> Bytes(const NvspMessage& m) {
  return {reinterpret_cast<const uint8_t*>(&m), sizeof(m)};
}

// Is `version` one Linux offers (kNvspVersions)?
bool IsKnownNvspVersion(uint32_t version);

}  // namespace vsp::net

#endif  // HVSTACK_VMWP_VSP_NET_NVSP_H_
