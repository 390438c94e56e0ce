#include "vmwp/vsp/net/rndis.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace vsp::net {
namespace {

template <typename... Args>
absl::Status Bad(const absl::FormatSpec<Args...>& format, const Args&... args) {
  return absl::InvalidArgumentError(absl::StrFormat(format, args...));
}

template <typename T>
T Load(std::span<const uint8_t> bytes, size_t at = 0) {
  T out;
  std::memcpy(&out, bytes.data() + at, sizeof(T));
  return out;
}

// [offset, offset + length) inside a `size`-byte area, without overflow.
bool Inside(uint64_t offset, uint64_t length, uint64_t size) {
  return offset <= size && length <= size - offset;
}

template <typename T>
std::vector<uint8_t> Message(uint32_t type, const T& body,
                             std::span<const uint8_t> extra = {}) {
  std::vector<uint8_t> out(kRndisHeaderSize + sizeof(T) + extra.size());
  const RndisHeader h{type, static_cast<uint32_t>(out.size())};
  std::memcpy(out.data(), &h, sizeof(h));
  std::memcpy(out.data() + kRndisHeaderSize, &body, sizeof(T));
  if (!extra.empty()) {
    std::memcpy(out.data() + kRndisHeaderSize + sizeof(T), extra.data(),
                extra.size());
  }
  return out;
}

}  // namespace

absl::StatusOr<RndisView> ParseRndisMessage(std::span<const uint8_t> bytes) {
  if (bytes.size() < kRndisHeaderSize) {
    return Bad("RNDIS message: %d bytes left, less than its 8-byte header",
               bytes.size());
  }
  const RndisHeader h = Load<RndisHeader>(bytes);
  if (h.length < kRndisHeaderSize) {
    return Bad("RNDIS %s: length %d is shorter than its header",
               RndisTypeName(h.type), h.length);
  }
  if (h.length > bytes.size()) {
    return Bad("RNDIS %s: length %d runs past the %d bytes sent",
               RndisTypeName(h.type), h.length, bytes.size());
  }
  return RndisView{
      h.type, h.length,
      bytes.subspan(kRndisHeaderSize, h.length - kRndisHeaderSize)};
}

std::string RndisTypeName(uint32_t type) {
  switch (type) {
    case kRndisMsgPacket:
      return "PACKET";
    case kRndisMsgInit:
      return "INIT";
    case kRndisMsgInitComplete:
      return "INIT_C";
    case kRndisMsgHalt:
      return "HALT";
    case kRndisMsgQuery:
      return "QUERY";
    case kRndisMsgQueryComplete:
      return "QUERY_C";
    case kRndisMsgSet:
      return "SET";
    case kRndisMsgSetComplete:
      return "SET_C";
    case kRndisMsgReset:
      return "RESET";
    case kRndisMsgResetComplete:
      return "RESET_C";
    case kRndisMsgIndicate:
      return "INDICATE";
    case kRndisMsgKeepalive:
      return "KEEPALIVE";
    case kRndisMsgKeepaliveComplete:
      return "KEEPALIVE_C";
    default:
      return absl::StrFormat("type 0x%x", type);
  }
}

absl::StatusOr<RndisPacketView> ParseRndisPacket(
    std::span<const uint8_t> body) {
  if (body.size() < sizeof(RndisPacket)) {
    return Bad("RNDIS PACKET: %d body bytes, less than its %d-byte header",
               body.size(), sizeof(RndisPacket));
  }
  const RndisPacket p = Load<RndisPacket>(body);
  if (p.data_offset < sizeof(RndisPacket) ||
      !Inside(p.data_offset, p.data_length, body.size())) {
    return Bad(
        "RNDIS PACKET: data (offset %d, length %d) is outside the %d-byte "
        "message body",
        p.data_offset, p.data_length, body.size());
  }
  if (p.oob_data_length != 0 &&
      (p.oob_data_offset < sizeof(RndisPacket) ||
       !Inside(p.oob_data_offset, p.oob_data_length, body.size()))) {
    return Bad(
        "RNDIS PACKET: out-of-band data (offset %d, length %d) is outside "
        "the %d-byte message body",
        p.oob_data_offset, p.oob_data_length, body.size());
  }
  RndisPacketView view;
  view.frame = body.subspan(p.data_offset, p.data_length);
  if (p.per_packet_info_length == 0) return view;
  if (p.per_packet_info_offset < sizeof(RndisPacket) ||
      !Inside(p.per_packet_info_offset, p.per_packet_info_length,
              body.size())) {
    return Bad(
        "RNDIS PACKET: per-packet info (offset %d, length %d) is outside the "
        "%d-byte message body",
        p.per_packet_info_offset, p.per_packet_info_length, body.size());
  }
  std::span<const uint8_t> area =
      body.subspan(p.per_packet_info_offset, p.per_packet_info_length);
  while (!area.empty()) {
    if (area.size() < sizeof(RndisPerPacketInfo)) {
      return Bad(
          "RNDIS PACKET: %d bytes of per-packet info left after %d "
          "elements, less than an element header",
          area.size(), view.ppi_count);
    }
    const RndisPerPacketInfo e = Load<RndisPerPacketInfo>(area);
    if (e.size < sizeof(RndisPerPacketInfo) || e.size > area.size()) {
      return Bad(
          "RNDIS PACKET: per-packet info element %d has size %d (%d "
          "bytes left)",
          view.ppi_count, e.size, area.size());
    }
    if (e.value_offset < sizeof(RndisPerPacketInfo) ||
        !Inside(e.value_offset, sizeof(uint32_t), e.size)) {
      return Bad(
          "RNDIS PACKET: per-packet info element %d: value offset %d "
          "does not leave a 4-byte value inside its %d bytes",
          view.ppi_count, e.value_offset, e.size);
    }
    const uint32_t value = Load<uint32_t>(area, e.value_offset);
    if ((e.type_and_internal & kPpiInternalBit) == 0) {
      switch (e.type_and_internal) {
        case kPpiIeee8021q:
          view.vlan = value;
          break;
        case kPpiTcpIpChecksum:
          view.checksum_info = value;
          break;
        case kPpiTcpLargeSend:
          view.lso_info = value;
          break;
        case kPpiHashValue:
          view.hash = value;
          break;
        default:
          break;
      }
    }
    ++view.ppi_count;
    area = area.subspan(e.size);
  }
  return view;
}

absl::StatusOr<RndisOidRequestView> ParseOidRequest(
    std::span<const uint8_t> body) {
  if (body.size() < sizeof(RndisOidRequest)) {
    return Bad("RNDIS QUERY/SET: %d body bytes, less than its %d-byte header",
               body.size(), sizeof(RndisOidRequest));
  }
  const RndisOidRequest r = Load<RndisOidRequest>(body);
  RndisOidRequestView view{r.request_id, r.oid, {}};
  if (r.info_buffer_length == 0) return view;
  if (r.info_buffer_offset < sizeof(RndisOidRequest) ||
      !Inside(r.info_buffer_offset, r.info_buffer_length, body.size())) {
    return Bad(
        "RNDIS QUERY/SET of OID 0x%x: information buffer (offset %d, length "
        "%d) is outside the %d-byte message body",
        r.oid, r.info_buffer_offset, r.info_buffer_length, body.size());
  }
  view.info = body.subspan(r.info_buffer_offset, r.info_buffer_length);
  return view;
}

absl::StatusOr<uint32_t> ParseRequestId(std::span<const uint8_t> body) {
  if (body.size() < sizeof(uint32_t)) {
    return Bad("RNDIS request of %d body bytes has no request id", body.size());
  }
  return Load<uint32_t>(body);
}

std::vector<uint8_t> BuildInitComplete(uint32_t request_id, uint32_t status,
                                       uint32_t max_packets_per_message,
                                       uint32_t max_transfer_size,
                                       uint32_t alignment_factor) {
  RndisInitializeComplete c{};
  c.request_id = request_id;
  c.status = status;
  c.major_version = kRndisMajorVersion;
  c.minor_version = kRndisMinorVersion;
  c.device_flags = kRndisDeviceFlagsConnectionless;
  c.medium = kRndisMedium8023;
  c.max_packets_per_message = max_packets_per_message;
  c.max_transfer_size = max_transfer_size;
  c.packet_alignment_factor = alignment_factor;
  return Message(kRndisMsgInitComplete, c);
}

std::vector<uint8_t> BuildQueryComplete(uint32_t request_id, uint32_t status,
                                        std::span<const uint8_t> info) {
  RndisQueryComplete c{};
  c.request_id = request_id;
  c.status = status;
  c.info_buffer_length = static_cast<uint32_t>(info.size());
  // Linux wants the offset at or after the fixed part even when empty.
  c.info_buffer_offset = sizeof(RndisQueryComplete);
  return Message(kRndisMsgQueryComplete, c, info);
}

std::vector<uint8_t> BuildSetComplete(uint32_t request_id, uint32_t status) {
  return Message(kRndisMsgSetComplete, RndisSetComplete{request_id, status});
}

std::vector<uint8_t> BuildResetComplete(uint32_t status) {
  return Message(kRndisMsgResetComplete, RndisResetComplete{status, 0});
}

std::vector<uint8_t> BuildKeepaliveComplete(uint32_t request_id,
                                            uint32_t status) {
  return Message(kRndisMsgKeepaliveComplete,
                 RndisKeepaliveComplete{request_id, status});
}

std::vector<uint8_t> BuildIndicateStatus(uint32_t status,
                                         std::span<const uint8_t> buffer) {
  RndisIndicateStatus s{};
  s.status = status;
  s.status_buffer_length = static_cast<uint32_t>(buffer.size());
  s.status_buffer_offset = buffer.empty() ? 0 : sizeof(RndisIndicateStatus);
  return Message(kRndisMsgIndicate, s, buffer);
}

void WriteRndisPacketHeader(uint32_t frame_length, uint8_t* out) {
  const RndisHeader h{kRndisMsgPacket, kRndisPacketHeaderSize + frame_length};
  RndisPacket p{};
  p.data_offset = sizeof(RndisPacket);
  p.data_length = frame_length;
  std::memcpy(out, &h, sizeof(h));
  std::memcpy(out + sizeof(h), &p, sizeof(p));
}

}  // namespace vsp::net
