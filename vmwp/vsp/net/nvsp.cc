#include "vmwp/vsp/net/nvsp.h"

#include <algorithm>
#include <string>

namespace vsp::net {

size_t MinGuestBodySize(uint32_t type) {
  switch (type) {
    case kNvspMsgInit:
      return sizeof(NvspInit);
    case kNvspMsg1SendNdisVersion:
      return sizeof(Nvsp1SendNdisVersion);
    case kNvspMsg1SendReceiveBuffer:
    case kNvspMsg1SendSendBuffer:
      return sizeof(Nvsp1SendBuffer);
    case kNvspMsg1RevokeReceiveBuffer:
    case kNvspMsg1RevokeSendBuffer:
      return sizeof(Nvsp1RevokeBuffer);
    case kNvspMsg1SendRndisPacket:
      return sizeof(Nvsp1SendRndisPacket);
    case kNvspMsg1SendRndisPacketComplete:
      return sizeof(Nvsp1SendRndisPacketComplete);
    case kNvspMsg2SendNdisConfig:
      return sizeof(Nvsp2SendNdisConfig);
    case kNvspMsg4SwitchDataPath:
      return sizeof(Nvsp4SwitchDataPath);
    case kNvspMsg5Subchannel:
      return sizeof(Nvsp5SubchannelRequest);
    default:
      return 0;
  }
}

absl::StatusOr<NvspView> ParseNvsp(std::span<const uint8_t> bytes) {
  if (bytes.size() < sizeof(uint32_t)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "NVSP message of %d bytes has no type field", bytes.size()));
  }
  NvspView view;
  std::memcpy(&view.type, bytes.data(), sizeof(uint32_t));
  view.body = bytes.subspan(sizeof(uint32_t));
  if (const size_t need = MinGuestBodySize(view.type);
      view.body.size() < need) {
    return absl::InvalidArgumentError(
        absl::StrFormat("NVSP %s: %d body bytes, need %d",
                        NvspTypeName(view.type), view.body.size(), need));
  }
  return view;
}

std::string NvspTypeName(uint32_t type) {
  switch (type) {
    case kNvspMsgInit:
      return "INIT";
    case kNvspMsgInitComplete:
      return "INIT_COMPLETE";
    case kNvspMsg1SendNdisVersion:
      return "SEND_NDIS_VER";
    case kNvspMsg1SendReceiveBuffer:
      return "SEND_RECV_BUF";
    case kNvspMsg1SendReceiveBufferComplete:
      return "SEND_RECV_BUF_COMPLETE";
    case kNvspMsg1RevokeReceiveBuffer:
      return "REVOKE_RECV_BUF";
    case kNvspMsg1SendSendBuffer:
      return "SEND_SEND_BUF";
    case kNvspMsg1SendSendBufferComplete:
      return "SEND_SEND_BUF_COMPLETE";
    case kNvspMsg1RevokeSendBuffer:
      return "REVOKE_SEND_BUF";
    case kNvspMsg1SendRndisPacket:
      return "SEND_RNDIS_PKT";
    case kNvspMsg1SendRndisPacketComplete:
      return "SEND_RNDIS_PKT_COMPLETE";
    case kNvspMsg2SendNdisConfig:
      return "SEND_NDIS_CONFIG";
    case kNvspMsg4SendVfAssociation:
      return "SEND_VF_ASSOCIATION";
    case kNvspMsg4SwitchDataPath:
      return "SWITCH_DATA_PATH";
    case kNvspMsg5OidQueryEx:
      return "OID_QUERY_EX";
    case kNvspMsg5Subchannel:
      return "SUBCHANNEL";
    case kNvspMsg5SendIndirectionTable:
      return "SEND_INDIRECTION_TABLE";
    case kNvspMsg6PdApi:
      return "PD_API";
    case kNvspMsg6PdPostBatch:
      return "PD_POST_BATCH";
    default:
      return absl::StrFormat("type %d", type);
  }
}

bool IsKnownNvspVersion(uint32_t version) {
  return std::find(std::begin(kNvspVersions), std::end(kNvspVersions),
                   version) != std::end(kNvspVersions);
}

}  // namespace vsp::net
