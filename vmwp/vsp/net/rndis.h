#ifndef HVSTACK_VMWP_VSP_NET_RNDIS_H_
#define HVSTACK_VMWP_VSP_NET_RNDIS_H_

// Parsing RNDIS messages from the guest and building the host's (layouts in
// rndis_protocol.h). Parsers take bytes already copied out of guest memory
// (no double fetch) and check every length and offset against them.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "vmwp/vsp/net/rndis_protocol.h"

namespace vsp::net {

// One RNDIS message: its type, and its body (the bytes after the 8-byte
// header, up to the header's length).
struct RndisView {
  uint32_t type = 0;
  uint32_t length = 0;  // header included
  std::span<const uint8_t> body;
};

// The first RNDIS message in `bytes`: its length must be at least the
// header and at most `bytes.size()` (a send-buffer section may hold several
// messages back to back; the caller continues at `length`).
absl::StatusOr<RndisView> ParseRndisMessage(std::span<const uint8_t> bytes);

// "PACKET", "INIT", ... or "type 0x...".
std::string RndisTypeName(uint32_t type);

// A data packet's frame and the per-packet info the host looks at.
struct RndisPacketView {
  std::span<const uint8_t> frame;
  std::optional<uint32_t> vlan;           // ndis_pkt_8021q_info
  std::optional<uint32_t> checksum_info;  // ndis_tcp_ip_checksum_info
  std::optional<uint32_t> lso_info;       // ndis_tcp_lso_info
  std::optional<uint32_t> hash;
  uint32_t ppi_count = 0;
};

// Parses an RNDIS_MSG_PACKET body: data and per-packet info inside the body,
// each PPI element inside the PPI area with its value inside the element.
// Unknown PPI types are skipped.
absl::StatusOr<RndisPacketView> ParseRndisPacket(std::span<const uint8_t> body);

// QUERY / SET request: id, OID and the information buffer (inside the body).
struct RndisOidRequestView {
  uint32_t request_id = 0;
  uint32_t oid = 0;
  std::span<const uint8_t> info;
};
absl::StatusOr<RndisOidRequestView> ParseOidRequest(
    std::span<const uint8_t> body);

// The request id every control request starts with (INIT, HALT, KEEPALIVE).
absl::StatusOr<uint32_t> ParseRequestId(std::span<const uint8_t> body);

// Host-to-guest messages (complete, with their RNDIS header).
std::vector<uint8_t> BuildInitComplete(uint32_t request_id, uint32_t status,
                                       uint32_t max_packets_per_message,
                                       uint32_t max_transfer_size,
                                       uint32_t alignment_factor);
std::vector<uint8_t> BuildQueryComplete(uint32_t request_id, uint32_t status,
                                        std::span<const uint8_t> info);
std::vector<uint8_t> BuildSetComplete(uint32_t request_id, uint32_t status);
std::vector<uint8_t> BuildResetComplete(uint32_t status);
std::vector<uint8_t> BuildKeepaliveComplete(uint32_t request_id,
                                            uint32_t status);
std::vector<uint8_t> BuildIndicateStatus(uint32_t status,
                                         std::span<const uint8_t> buffer = {});

// The RNDIS_MSG_PACKET header (44 bytes) for a `frame_length`-byte frame
// that follows it directly: what the host writes in front of every frame
// it passes to the guest.
void WriteRndisPacketHeader(uint32_t frame_length, uint8_t* out);

}  // namespace vsp::net

#endif  // HVSTACK_VMWP_VSP_NET_RNDIS_H_
