#include "vmwp/vsp/net/rndis_device.h"

#include <algorithm>
#include <cstring>
#include <string_view>

#include "absl/strings/str_format.h"
#include "vmwp/vsp/net/nvsp_protocol.h"

namespace vsp::net {
namespace {

template <typename T>
std::vector<uint8_t> AsBytes(const T& value) {
  std::vector<uint8_t> out(sizeof(T));
  std::memcpy(out.data(), &value, sizeof(T));
  return out;
}

std::vector<uint8_t> U32(uint32_t v) { return AsBytes(v); }

// OIDs answered by Query (OID_GEN_SUPPORTED_LIST).
constexpr uint32_t kSupportedOids[] = {
    kOidGenSupportedList,
    kOidGenHardwareStatus,
    kOidGenMediaSupported,
    kOidGenMediaInUse,
    kOidGenMaximumLookahead,
    kOidGenMaximumFrameSize,
    kOidGenLinkSpeed,
    kOidGenTransmitBlockSize,
    kOidGenReceiveBlockSize,
    kOidGenVendorId,
    kOidGenVendorDescription,
    kOidGenCurrentPacketFilter,
    kOidGenCurrentLookahead,
    kOidGenMaximumTotalSize,
    kOidGenMacOptions,
    kOidGenMediaConnectStatus,
    kOidGenMaximumSendPackets,
    kOidGenPhysicalMedium,
    kOid8023PermanentAddress,
    kOid8023CurrentAddress,
    kOid8023MaximumListSize,
    kOidTcpOffloadHardwareCapabilities,
    kOidTcpOffloadCurrentConfig,
    kOidTcpOffloadParameters,
};

constexpr std::string_view kVendorDescription = "hvstack network adapter";

// The offload capabilities: none. The size and revision follow what the
// guest asked for (Linux: revision 3 / full size for NVSP >= 5, 2 / NDIS 6.1
// size for NVSP 4, 1 / NDIS 6.0 size below), within what we know.
std::vector<uint8_t> OffloadCapabilities(std::span<const uint8_t> request,
                                         uint32_t nvsp_version) {
  uint32_t size = nvsp_version >= kNvspVersion5   ? kNdisOffloadSize
                  : nvsp_version >= kNvspVersion4 ? kNdisOffloadSize61
                                                  : kNdisOffloadSize60;
  uint8_t revision = nvsp_version >= kNvspVersion5   ? 3
                     : nvsp_version >= kNvspVersion4 ? 2
                                                     : kNdisOffloadRevision1;
  if (request.size() >= sizeof(NdisObjectHeader)) {
    NdisObjectHeader asked;
    std::memcpy(&asked, request.data(), sizeof(asked));
    if (asked.type == kNdisObjectTypeOffload &&
        asked.size >= kNdisOffloadSize60 && asked.size <= kNdisOffloadSize) {
      size = asked.size;
      revision = std::clamp<uint8_t>(asked.revision, kNdisOffloadRevision1,
                                     kNdisOffloadRevision3);
    }
  }
  NdisOffload caps{};
  caps.header.type = kNdisObjectTypeOffload;
  caps.header.revision = revision;
  caps.header.size = static_cast<uint16_t>(size);
  std::vector<uint8_t> out(size);
  std::memcpy(out.data(), &caps, size);
  return out;
}

// OID_TCP_OFFLOAD_PARAMETERS may only keep or disable: nothing is offered.
bool OnlyDisablesOffloads(std::span<const uint8_t> info) {
  if (info.size() < kNdisOffloadParametersSizeV4) return false;
  NdisOffloadParameters p{};
  std::memcpy(&p, info.data(), std::min(info.size(), sizeof(p)));
  const uint8_t settings[] = {p.ip4_checksum,
                              p.tcp4_checksum,
                              p.udp4_checksum,
                              p.tcp6_checksum,
                              p.udp6_checksum,
                              p.lso_v1,
                              p.ipsec_v1,
                              p.lso_v2_ip4,
                              p.lso_v2_ip6,
                              p.tcp_connection_ip4,
                              p.tcp_connection_ip6,
                              p.rsc_ip4,
                              p.rsc_ip6};
  for (uint8_t s : settings) {
    if (s != kOffloadParameterNoChange && s != kOffloadParameterDisabled) {
      return false;
    }
  }
  return true;
}

}  // namespace

RndisDevice::Result RndisDevice::HandleControl(const RndisView& message,
                                               uint32_t nvsp_version) {
  Result result;
  switch (message.type) {
    case kRndisMsgInit: {
      absl::StatusOr<uint32_t> id = ParseRequestId(message.body);
      if (!id.ok() || message.body.size() < sizeof(RndisInitializeRequest)) {
        result.error = absl::InvalidArgumentError(absl::StrFormat(
            "RNDIS INIT of %d bytes is too short", message.length));
        if (id.ok()) {
          result.response =
              BuildInitComplete(*id, kRndisStatusInvalidLength, 0, 0, 0);
        }
        return result;
      }
      // A second INIT restarts the device (RNDIS allows INIT after HALT;
      // a guest that skips the HALT gets the same).
      initialized_ = true;
      packet_filter_ = 0;
      result.response =
          BuildInitComplete(*id, kRndisStatusSuccess, kMaxPacketsPerMessage,
                            kMaxTransferSize, kPacketAlignmentFactor);
      return result;
    }
    case kRndisMsgHalt:
      initialized_ = false;
      packet_filter_ = 0;
      return result;
    case kRndisMsgQuery:
    case kRndisMsgSet: {
      absl::StatusOr<RndisOidRequestView> r = ParseOidRequest(message.body);
      if (!r.ok()) {
        result.error = r.status();
        // Answer what can be matched, so that the guest does not wait.
        if (absl::StatusOr<uint32_t> id = ParseRequestId(message.body);
            id.ok()) {
          result.response =
              message.type == kRndisMsgQuery
                  ? BuildQueryComplete(*id, kRndisStatusInvalidData, {})
                  : BuildSetComplete(*id, kRndisStatusInvalidData);
        }
        return result;
      }
      return message.type == kRndisMsgQuery ? Query(*r, nvsp_version) : Set(*r);
    }
    case kRndisMsgReset:
      // Nothing is in flight inside the device: a reset changes nothing but
      // is answered (addressing_reset 0: the filter and addresses stay).
      result.response = BuildResetComplete(kRndisStatusSuccess);
      return result;
    case kRndisMsgKeepalive: {
      absl::StatusOr<uint32_t> id = ParseRequestId(message.body);
      if (!id.ok()) {
        result.error = id.status();
        return result;
      }
      result.response = BuildKeepaliveComplete(*id, kRndisStatusSuccess);
      return result;
    }
    default:
      result.error = absl::InvalidArgumentError(
          absl::StrFormat("RNDIS %s is not a message a guest sends",
                          RndisTypeName(message.type)));
      return result;
  }
}

RndisDevice::Result RndisDevice::Query(const RndisOidRequestView& r,
                                       uint32_t nvsp_version) {
  const uint32_t mtu = config_.mtu;
  std::optional<std::vector<uint8_t>> info;
  switch (r.oid) {
    case kOidGenSupportedList:
      info.emplace(sizeof(kSupportedOids));
      std::memcpy(info->data(), kSupportedOids, sizeof(kSupportedOids));
      break;
    case kOidGenHardwareStatus:  // NdisHardwareStatusReady
    case kOidGenMediaSupported:  // 802.3
    case kOidGenMediaInUse:
    case kOidGenMacOptions:
    case kOidGenPhysicalMedium:  // unspecified
      info = U32(0);
      break;
    case kOidGenMaximumLookahead:
    case kOidGenCurrentLookahead:
    case kOidGenMaximumFrameSize:  // the MTU (Linux takes it as such)
      info = U32(mtu);
      break;
    case kOidGenTransmitBlockSize:
    case kOidGenReceiveBlockSize:
    case kOidGenMaximumTotalSize:
      info = U32(mtu + 14);
      break;
    case kOidGenLinkSpeed:
      info = U32(static_cast<uint32_t>(
          std::min<uint64_t>(config_.link_speed_bps / 100, 0xFFFFFFFFu)));
      break;
    case kOidGenVendorId:
      info = U32(0x00FFFFFF);  // no IEEE OUI
      break;
    case kOidGenVendorDescription:
      info.emplace(kVendorDescription.begin(), kVendorDescription.end());
      info->push_back(0);
      break;
    case kOidGenCurrentPacketFilter:
      info = U32(packet_filter_);
      break;
    case kOidGenMediaConnectStatus:
      info = U32(link_up_ ? kMediaStateConnected : kMediaStateDisconnected);
      break;
    case kOidGenMaximumSendPackets:
      info = U32(kMaxPacketsPerMessage);
      break;
    case kOid8023PermanentAddress:
    case kOid8023CurrentAddress:
      info.emplace(config_.mac.begin(), config_.mac.end());
      break;
    case kOid8023MaximumListSize:
      info = U32(32);
      break;
    case kOidTcpOffloadHardwareCapabilities:
    case kOidTcpOffloadCurrentConfig:
      info = OffloadCapabilities(r.info, nvsp_version);
      break;
    default:
      break;  // OID_GEN_RECEIVE_SCALE_CAPABILITIES (no vRSS), FRIENDLY_NAME...
  }
  Result result;
  result.response =
      info.has_value()
          ? BuildQueryComplete(r.request_id, kRndisStatusSuccess, *info)
          : BuildQueryComplete(r.request_id, kRndisStatusNotSupported, {});
  return result;
}

RndisDevice::Result RndisDevice::Set(const RndisOidRequestView& r) {
  uint32_t status = kRndisStatusSuccess;
  switch (r.oid) {
    case kOidGenCurrentPacketFilter:
      if (r.info.size() < sizeof(uint32_t)) {
        status = kRndisStatusInvalidLength;
      } else {
        std::memcpy(&packet_filter_, r.info.data(), sizeof(uint32_t));
      }
      break;
    case kOidTcpOffloadParameters:
      if (!OnlyDisablesOffloads(r.info)) status = kRndisStatusNotSupported;
      break;
    case kOid8023MulticastList:  // all multicast passes MULTICAST anyway
    case kOidGenCurrentLookahead:
    case kOidGenNetworkLayerAddresses:
      break;
    default:
      // RNDIS_CONFIG_PARAMETER (MAC change), RECEIVE_SCALE_PARAMETERS, ...
      status = kRndisStatusNotSupported;
      break;
  }
  Result result;
  result.response = BuildSetComplete(r.request_id, status);
  return result;
}

bool RndisDevice::Accepts(std::span<const uint8_t> frame) const {
  if (packet_filter_ == 0 || frame.size() < 6) return false;
  if (packet_filter_ & kPacketTypePromiscuous) return true;
  const uint8_t* dst = frame.data();
  if (dst[0] & 1) {  // group address
    static constexpr uint8_t kBroadcast[6] = {0xff, 0xff, 0xff,
                                              0xff, 0xff, 0xff};
    if (std::memcmp(dst, kBroadcast, 6) == 0) {
      return (packet_filter_ & kPacketTypeBroadcast) != 0;
    }
    return (packet_filter_ &
            (kPacketTypeMulticast | kPacketTypeAllMulticast)) != 0;
  }
  return (packet_filter_ & kPacketTypeDirected) != 0 &&
         std::memcmp(dst, config_.mac.data(), 6) == 0;
}

std::vector<uint8_t> RndisDevice::BuildLinkIndication(bool up) {
  return BuildIndicateStatus(up ? kRndisStatusMediaConnect
                                : kRndisStatusMediaDisconnect);
}

}  // namespace vsp::net
