#ifndef HVSTACK_VMWP_VSP_NET_NVSP_PROTOCOL_H_
#define HVSTACK_VMWP_VSP_NET_NVSP_PROTOCOL_H_

// The network VSP protocol (NVSP) on the wire, as Linux's hv_netvsc speaks it
// (drivers/net/hyperv/hyperv_net.h: struct nvsp_message and its members;
// include/linux/hyperv.h: struct vmtransfer_page_packet_header). Every NVSP
// message is a 4-byte type followed by its body; Linux always sends
// sizeof(struct nvsp_message) = 40 bytes and reads completions of that size,
// so the host does the same. Layouts only: the logic is in nvsp.h and
// netvsp_session.h.

#include <cstddef>
#include <cstdint>

#include "vmwp/vmbus/channel_messages.h"

namespace vsp::net {

// The VMBus class id of a synthetic network adapter (HV_NIC_GUID,
// f8615163-df3e-46c5-913f-f2d2f965ed0e), the offer hv_netvsc binds to.
inline vmbus::Guid NetworkClassId() {
  return vmbus::Guid::FromFields(
      0xf8615163, 0xdf3e, 0x46c5,
      {0x91, 0x3f, 0xf2, 0xd2, 0xf9, 0x65, 0xed, 0x0e});
}

// Protocol versions (NVSP_PROTOCOL_VERSION_*), the only ones Linux offers,
// newest first (it tries them in this order, each as min = max).
inline constexpr uint32_t kNvspVersion1 = 2;
inline constexpr uint32_t kNvspVersion2 = 0x30002;
inline constexpr uint32_t kNvspVersion4 = 0x40000;
inline constexpr uint32_t kNvspVersion5 = 0x50000;
inline constexpr uint32_t kNvspVersion6 = 0x60000;
inline constexpr uint32_t kNvspVersion61 = 0x60001;
inline constexpr uint32_t kNvspVersions[] = {kNvspVersion61, kNvspVersion6,
                                             kNvspVersion5,  kNvspVersion4,
                                             kNvspVersion2,  kNvspVersion1};

enum NvspMessageType : uint32_t {
  kNvspMsgNone = 0,
  kNvspMsgInit = 1,
  kNvspMsgInitComplete = 2,
  // Version 1.
  kNvspMsg1SendNdisVersion = 100,
  kNvspMsg1SendReceiveBuffer = 101,
  kNvspMsg1SendReceiveBufferComplete = 102,
  kNvspMsg1RevokeReceiveBuffer = 103,
  kNvspMsg1SendSendBuffer = 104,
  kNvspMsg1SendSendBufferComplete = 105,
  kNvspMsg1RevokeSendBuffer = 106,
  kNvspMsg1SendRndisPacket = 107,
  kNvspMsg1SendRndisPacketComplete = 108,
  // Version 2 (109..124 are chimney/VMQ messages Linux never sends).
  kNvspMsg2SendChimneyDelegatedBuffer = 109,
  kNvspMsg2AllocateReceiveBuffer = 120,
  kNvspMsg2FreeReceiveBuffer = 122,
  kNvspMsg2SendNdisConfig = 125,
  kNvspMsg2AllocateChimneyHandleComplete = 127,
  // Version 4.
  kNvspMsg4SendVfAssociation = 128,
  kNvspMsg4SwitchDataPath = 129,
  kNvspMsg4UplinkConnectStateDeprecated = 130,
  // Version 5.
  kNvspMsg5OidQueryEx = 131,
  kNvspMsg5OidQueryExComplete = 132,
  kNvspMsg5Subchannel = 133,
  kNvspMsg5SendIndirectionTable = 134,
  // Version 6.
  kNvspMsg6PdApi = 135,
  kNvspMsg6PdPostBatch = 136,
};

// NVSP_STAT_*.
enum NvspStatus : uint32_t {
  kNvspStatusNone = 0,
  kNvspStatusSuccess = 1,
  kNvspStatusFail = 2,
  kNvspStatusProtocolTooNew = 3,
  kNvspStatusProtocolTooOld = 4,
  kNvspStatusInvalidRndisPacket = 5,
  kNvspStatusBusy = 6,
  kNvspStatusProtocolUnsupported = 7,
};

// nvsp_1_message_send_rndis_packet.channel_type.
inline constexpr uint32_t kRndisChannelData = 0;     // RMC_DATA
inline constexpr uint32_t kRndisChannelControl = 1;  // RMC_CONTROL
// send_buf_section_index when the send buffer is not used.
inline constexpr uint32_t kNoSendSection = 0xFFFFFFFF;

// nvsp_5_subchannel_request.op.
inline constexpr uint32_t kNvspSubchannelAllocate = 1;

#pragma pack(push, 1)

struct NvspInit {  // guest -> host, completion requested
  uint32_t min_protocol_version;
  uint32_t max_protocol_version;
};
static_assert(sizeof(NvspInit) == 8);

struct NvspInitComplete {  // host -> guest, in the VMBus completion
  uint32_t negotiated_protocol_version;
  uint32_t max_mdl_chain_length;
  uint32_t status;
};
static_assert(sizeof(NvspInitComplete) == 12);

struct Nvsp1SendNdisVersion {  // guest -> host, no completion
  uint32_t ndis_major_version;
  uint32_t ndis_minor_version;
};
static_assert(sizeof(Nvsp1SendNdisVersion) == 8);

// SEND_RECV_BUF and SEND_SEND_BUF: a GPADL the guest created on this channel.
struct Nvsp1SendBuffer {
  uint32_t gpadl_handle;
  uint16_t id;
};
static_assert(sizeof(Nvsp1SendBuffer) == 6);

struct Nvsp1ReceiveBufferSection {
  uint32_t offset;
  uint32_t sub_allocation_size;
  uint32_t sub_allocation_count;
  uint32_t end_offset;
};
static_assert(sizeof(Nvsp1ReceiveBufferSection) == 16);

struct Nvsp1SendReceiveBufferComplete {
  uint32_t status;
  uint32_t section_count;  // Linux accepts exactly one section at offset 0
  Nvsp1ReceiveBufferSection sections[1];
};
static_assert(sizeof(Nvsp1SendReceiveBufferComplete) == 24);

struct Nvsp1RevokeBuffer {  // REVOKE_RECV_BUF / REVOKE_SEND_BUF, no completion
  uint16_t id;
};
static_assert(sizeof(Nvsp1RevokeBuffer) == 2);

struct Nvsp1SendSendBufferComplete {
  uint32_t status;
  uint32_t section_size;  // the host chooses it; Linux needs >= 68
};
static_assert(sizeof(Nvsp1SendSendBufferComplete) == 8);

// SEND_RNDIS_PKT: one or more RNDIS messages, in a send-buffer section and/or
// in the GPA-direct ranges of the VMBus packet; or (host -> guest) in the
// receive-buffer ranges of a transfer-page packet.
struct Nvsp1SendRndisPacket {
  uint32_t channel_type;
  uint32_t send_buffer_section_index;
  uint32_t send_buffer_section_size;
};
static_assert(sizeof(Nvsp1SendRndisPacket) == 12);

struct Nvsp1SendRndisPacketComplete {
  uint32_t status;
};
static_assert(sizeof(Nvsp1SendRndisPacketComplete) == 4);

struct Nvsp2SendNdisConfig {  // guest -> host, no completion
  uint32_t mtu;               // the guest's MTU + ETH_HLEN
  uint32_t reserved;
  uint64_t capabilities;  // bit 0 vmq, 1 chimney, 2 sriov, 3 ieee8021q, ...
};
static_assert(sizeof(Nvsp2SendNdisConfig) == 16);

struct Nvsp4SwitchDataPath {
  uint32_t active_datapath;  // 0 synthetic, 1 VF
};
static_assert(sizeof(Nvsp4SwitchDataPath) == 4);

struct Nvsp5SubchannelRequest {
  uint32_t op;
  uint32_t subchannel_count;
};
static_assert(sizeof(Nvsp5SubchannelRequest) == 8);

struct Nvsp5SubchannelComplete {
  uint32_t status;
  uint32_t subchannel_count;  // allocated
};
static_assert(sizeof(Nvsp5SubchannelComplete) == 8);

struct Nvsp5SendIndirectionTable {  // + `count` u32 at `offset` from the
  uint32_t count;                   // start of the message
  uint32_t offset;
};
static_assert(sizeof(Nvsp5SendIndirectionTable) == 8);

// struct nvsp_message: the type and the largest member of the body union
// (nvsp_6_pd_api_comp, 36 bytes).
inline constexpr size_t kNvspBodySize = 36;
struct NvspMessage {
  uint32_t type;
  uint8_t body[kNvspBodySize];
};
static_assert(sizeof(NvspMessage) == 40);
static_assert(sizeof(Nvsp1SendReceiveBufferComplete) <= kNvspBodySize);

// What follows the VMBus packet descriptor of a VM_PKT_DATA_USING_XFER_PAGES
// packet (struct vmtransfer_page_packet_header without its descriptor): the
// transfer page set (the receive buffer's id) and `range_count` ranges of it.
struct TransferPageHeader {
  uint16_t transfer_page_set_id;
  uint8_t sender_owns_set;
  uint8_t reserved;
  uint32_t range_count;
};
static_assert(sizeof(TransferPageHeader) == 8);

struct TransferPageRange {
  uint32_t byte_count;
  uint32_t byte_offset;
};
static_assert(sizeof(TransferPageRange) == 8);

#pragma pack(pop)

// Linux reads at most NVSP_RSC_MAX (562) ranges in one transfer-page packet
// (its max_pkt_size for the channel follows from it).
inline constexpr uint32_t kMaxTransferPageRanges = 562;

}  // namespace vsp::net

#endif  // HVSTACK_VMWP_VSP_NET_NVSP_PROTOCOL_H_
