#ifndef HVSTACK_VMWP_VSP_NET_RNDIS_PROTOCOL_H_
#define HVSTACK_VMWP_VSP_NET_RNDIS_PROTOCOL_H_

// Remote NDIS as it travels inside NVSP SEND_RNDIS_PKT messages, laid out as
// Linux's hv_netvsc reads and writes it (include/linux/rndis.h for message
// types, statuses, OIDs; drivers/net/hyperv/hyperv_net.h for the message
// bodies, per-packet info and the NDIS offload objects). Every RNDIS message
// starts with {type, length}; offsets inside a message body (information
// buffers, packet data, per-packet info, status buffers) count from the first
// byte after those 8 bytes. Layouts only: the logic is in rndis.h.

#include <cstddef>
#include <cstdint>

namespace vsp::net {

inline constexpr uint32_t kRndisMajorVersion = 1;
inline constexpr uint32_t kRndisMinorVersion = 0;

enum RndisMessageType : uint32_t {
  kRndisMsgPacket = 0x00000001,
  kRndisMsgInit = 0x00000002,
  kRndisMsgInitComplete = 0x80000002,
  kRndisMsgHalt = 0x00000003,
  kRndisMsgQuery = 0x00000004,
  kRndisMsgQueryComplete = 0x80000004,
  kRndisMsgSet = 0x00000005,
  kRndisMsgSetComplete = 0x80000005,
  kRndisMsgReset = 0x00000006,
  kRndisMsgResetComplete = 0x80000006,
  kRndisMsgIndicate = 0x00000007,
  kRndisMsgKeepalive = 0x00000008,
  kRndisMsgKeepaliveComplete = 0x80000008,
};

enum RndisStatus : uint32_t {
  kRndisStatusSuccess = 0x00000000,
  kRndisStatusMediaConnect = 0x4001000B,
  kRndisStatusMediaDisconnect = 0x4001000C,
  kRndisStatusLinkSpeedChange = 0x40010013,
  kRndisStatusNetworkChange = 0x40010018,
  kRndisStatusBufferOverflow = 0x80000005,
  kRndisStatusFailure = 0xC0000001,
  kRndisStatusResources = 0xC000009A,
  kRndisStatusNotSupported = 0xC00000BB,
  kRndisStatusInvalidLength = 0xC0010014,
  kRndisStatusInvalidData = 0xC0010015,
  kRndisStatusBufferTooShort = 0xC0010016,
  kRndisStatusInvalidOid = 0xC0010017,
};

// OIDs (RNDIS_OID_* in rndis.h, OID_* in hyperv_net.h).
enum RndisOid : uint32_t {
  kOidGenSupportedList = 0x00010101,
  kOidGenHardwareStatus = 0x00010102,
  kOidGenMediaSupported = 0x00010103,
  kOidGenMediaInUse = 0x00010104,
  kOidGenMaximumLookahead = 0x00010105,
  kOidGenMaximumFrameSize = 0x00010106,
  kOidGenLinkSpeed = 0x00010107,
  kOidGenTransmitBlockSize = 0x0001010A,
  kOidGenReceiveBlockSize = 0x0001010B,
  kOidGenVendorId = 0x0001010C,
  kOidGenVendorDescription = 0x0001010D,
  kOidGenCurrentPacketFilter = 0x0001010E,
  kOidGenCurrentLookahead = 0x0001010F,
  kOidGenDriverVersion = 0x00010110,
  kOidGenMaximumTotalSize = 0x00010111,
  kOidGenMacOptions = 0x00010113,
  kOidGenMediaConnectStatus = 0x00010114,
  kOidGenMaximumSendPackets = 0x00010115,
  kOidGenVendorDriverVersion = 0x00010116,
  kOidGenNetworkLayerAddresses = 0x00010118,
  kOidGenTransportHeaderOffset = 0x00010119,
  kOidGenReceiveScaleCapabilities = 0x00010203,
  kOidGenReceiveScaleParameters = 0x00010204,
  kOidGenPhysicalMedium = 0x00010202,
  kOidGenRndisConfigParameter = 0x0001021B,
  kOidGenXmitOk = 0x00020101,
  kOidGenRcvOk = 0x00020102,
  kOidGenXmitError = 0x00020103,
  kOidGenRcvError = 0x00020104,
  kOidGenRcvNoBuffer = 0x00020105,
  kOidGenFriendlyName = 0x00020216,
  kOid8023PermanentAddress = 0x01010101,
  kOid8023CurrentAddress = 0x01010102,
  kOid8023MulticastList = 0x01010103,
  kOid8023MaximumListSize = 0x01010104,
  kOidOffloadEncapsulation = 0x0101010A,
  kOidTcpOffloadCurrentConfig = 0xFC01020B,
  kOidTcpOffloadParameters = 0xFC01020C,
  kOidTcpOffloadHardwareCapabilities = 0xFC01020D,
  kOidTcpConnectionOffloadCurrentConfig = 0xFC01020E,
  kOidTcpConnectionOffloadHardwareCapabilities = 0xFC01020F,
};

// RNDIS_OID_GEN_MEDIA_CONNECT_STATUS values.
inline constexpr uint32_t kMediaStateConnected = 0;
inline constexpr uint32_t kMediaStateDisconnected = 1;
// INIT_C: connectionless device, 802.3 medium.
inline constexpr uint32_t kRndisDeviceFlagsConnectionless = 0x00000001;
inline constexpr uint32_t kRndisMedium8023 = 0x00000000;

// NDIS_PACKET_TYPE_* (the packet filter bits hv_netvsc sets).
inline constexpr uint32_t kPacketTypeDirected = 0x00000001;
inline constexpr uint32_t kPacketTypeMulticast = 0x00000002;
inline constexpr uint32_t kPacketTypeAllMulticast = 0x00000004;
inline constexpr uint32_t kPacketTypeBroadcast = 0x00000008;
inline constexpr uint32_t kPacketTypePromiscuous = 0x00000020;

#pragma pack(push, 1)

struct RndisHeader {
  uint32_t type;
  uint32_t length;  // the whole message, header included
};
static_assert(sizeof(RndisHeader) == 8);
inline constexpr uint32_t kRndisHeaderSize = sizeof(RndisHeader);

struct RndisInitializeRequest {
  uint32_t request_id;
  uint32_t major_version;
  uint32_t minor_version;
  uint32_t max_transfer_size;
};
static_assert(sizeof(RndisInitializeRequest) == 16);

struct RndisInitializeComplete {
  uint32_t request_id;
  uint32_t status;
  uint32_t major_version;
  uint32_t minor_version;
  uint32_t device_flags;
  uint32_t medium;
  uint32_t max_packets_per_message;
  uint32_t max_transfer_size;
  uint32_t packet_alignment_factor;  // log2 of the alignment
  uint32_t af_list_offset;
  uint32_t af_list_size;
};
static_assert(sizeof(RndisInitializeComplete) == 44);

struct RndisHaltRequest {
  uint32_t request_id;
};
static_assert(sizeof(RndisHaltRequest) == 4);

// QUERY and SET share this layout (rndis_query_request / rndis_set_request).
struct RndisOidRequest {
  uint32_t request_id;
  uint32_t oid;
  uint32_t info_buffer_length;
  uint32_t info_buffer_offset;  // from request_id
  uint32_t device_vc_handle;
};
static_assert(sizeof(RndisOidRequest) == 20);
static_assert(offsetof(RndisOidRequest, info_buffer_offset) == 12);

struct RndisQueryComplete {
  uint32_t request_id;
  uint32_t status;
  uint32_t info_buffer_length;
  uint32_t info_buffer_offset;  // from request_id
};
static_assert(sizeof(RndisQueryComplete) == 16);

struct RndisSetComplete {
  uint32_t request_id;
  uint32_t status;
};
static_assert(sizeof(RndisSetComplete) == 8);

struct RndisResetRequest {
  uint32_t reserved;
};
static_assert(sizeof(RndisResetRequest) == 4);

struct RndisResetComplete {  // no request id: Linux has no way to match it
  uint32_t status;
  uint32_t addressing_reset;
};
static_assert(sizeof(RndisResetComplete) == 8);

struct RndisIndicateStatus {
  uint32_t status;
  uint32_t status_buffer_length;
  uint32_t status_buffer_offset;  // from `status`
};
static_assert(sizeof(RndisIndicateStatus) == 12);

struct RndisKeepaliveRequest {
  uint32_t request_id;
};
static_assert(sizeof(RndisKeepaliveRequest) == 4);

struct RndisKeepaliveComplete {
  uint32_t request_id;
  uint32_t status;
};
static_assert(sizeof(RndisKeepaliveComplete) == 8);

// RNDIS_MSG_PACKET's body. Offsets count from `data_offset` (the body).
struct RndisPacket {
  uint32_t data_offset;
  uint32_t data_length;
  uint32_t oob_data_offset;
  uint32_t oob_data_length;
  uint32_t oob_element_count;
  uint32_t per_packet_info_offset;
  uint32_t per_packet_info_length;
  uint32_t vc_handle;
  uint32_t reserved;
};
static_assert(sizeof(RndisPacket) == 36);
static_assert(offsetof(RndisPacket, per_packet_info_offset) == 20);
inline constexpr uint32_t kRndisPacketHeaderSize =
    kRndisHeaderSize + sizeof(RndisPacket);  // 44: RNDIS_MESSAGE_SIZE(pkt)

// One per-packet info element (rndis_per_packet_info): `size` covers the
// element with its value; the value starts `value_offset` bytes in.
struct RndisPerPacketInfo {
  uint32_t size;
  uint32_t type_and_internal;  // type:31, internal:1 (bit 31)
  uint32_t value_offset;
};
static_assert(sizeof(RndisPerPacketInfo) == 12);

#pragma pack(pop)

inline constexpr uint32_t kPpiInternalBit = 0x80000000u;

// enum ndis_per_pkt_info_type (internal = 0) and RNDIS_PKTINFO_ID (internal).
enum PerPacketInfoType : uint32_t {
  kPpiTcpIpChecksum = 0,
  kPpiIpsec = 1,
  kPpiTcpLargeSend = 2,
  kPpiClassificationHandle = 3,
  kPpiSgList = 5,
  kPpiIeee8021q = 6,
  kPpiOriginal = 7,
  kPpiHashValue = 8,  // NBL_HASH_VALUE = PACKET_CANCEL_ID
  kPpiShortPacketPadding = 11,
};
inline constexpr uint32_t kPpiInternalPacketId = 1;  // RNDIS_PKTINFO_ID

// ndis_pkt_8021q_info: pri bits 0-2, cfi bit 3, vlan id bits 4-15.
inline constexpr uint32_t kVlanInfoPriorityMask = 0x7;
inline constexpr uint32_t kVlanInfoCfiBit = 0x8;
inline constexpr uint32_t kVlanInfoIdShift = 4;
inline constexpr uint32_t kVlanInfoIdMask = 0xFFF;

// ndis_tcp_ip_checksum_info, transmit view: is_ipv4 bit 0, is_ipv6 bit 1,
// tcp_checksum bit 2, udp_checksum bit 3, ip_header_checksum bit 4,
// tcp_header_offset bits 16-25.
inline constexpr uint32_t kCsumTxIpv4 = 1u << 0;
inline constexpr uint32_t kCsumTxIpv6 = 1u << 1;
inline constexpr uint32_t kCsumTxTcp = 1u << 2;
inline constexpr uint32_t kCsumTxUdp = 1u << 3;
inline constexpr uint32_t kCsumTxIpHeader = 1u << 4;

// NDIS objects Linux exchanges in OIDs (not packed in hyperv_net.h: natural
// alignment, hence the explicit padding below).
struct NdisObjectHeader {
  uint8_t type;
  uint8_t revision;
  uint16_t size;
};
static_assert(sizeof(NdisObjectHeader) == 4);

inline constexpr uint8_t kNdisObjectTypeDefault = 0x80;
inline constexpr uint8_t kNdisObjectTypeRssCapabilities = 0x88;
inline constexpr uint8_t kNdisObjectTypeRssParameters = 0x89;
inline constexpr uint8_t kNdisObjectTypeOffload = 0xA7;

struct NdisChecksumOffload {
  uint32_t ip4_tx_encapsulation;
  uint32_t ip4_tx_checksum;
  uint32_t ip4_rx_encapsulation;
  uint32_t ip4_rx_checksum;
  uint32_t ip6_tx_encapsulation;
  uint32_t ip6_tx_checksum;
  uint32_t ip6_rx_encapsulation;
  uint32_t ip6_rx_checksum;
};
static_assert(sizeof(NdisChecksumOffload) == 32);

struct NdisLsoV1Offload {
  uint32_t encapsulation;
  uint32_t max_size;
  uint32_t min_segments;
  uint32_t options;
};
static_assert(sizeof(NdisLsoV1Offload) == 16);

struct NdisIpsecV1Offload {
  uint32_t encapsulation;
  uint32_t ah_esp;
  uint32_t transport_tunnel;
  uint32_t ip4_options;
  uint32_t flags;
  uint32_t ip4_ah;
  uint32_t ip4_esp;
};
static_assert(sizeof(NdisIpsecV1Offload) == 28);

struct NdisLsoV2Offload {
  uint32_t ip4_encapsulation;
  uint32_t ip4_max_size;
  uint32_t ip4_min_segments;
  uint32_t ip6_encapsulation;
  uint32_t ip6_max_size;
  uint32_t ip6_min_segments;
  uint32_t ip6_options;
};
static_assert(sizeof(NdisLsoV2Offload) == 28);

struct NdisIpsecV2Offload {
  uint32_t encapsulation;
  uint8_t ip6, ip4_options, ip6_extension, ah, esp, ah_esp, transport, tunnel,
      transport_tunnel, lso, extended_sequence;
  uint8_t padding;  // natural alignment of udp_esp
  uint32_t udp_esp;
  uint32_t authentication;
  uint32_t cryptography;
  uint32_t sa_capabilities;
};
static_assert(sizeof(NdisIpsecV2Offload) == 32);

struct NdisRscOffload {
  uint8_t ip4;
  uint8_t ip6;
  uint8_t padding[2];  // natural alignment of the next member
};

struct NdisEncapsulationOffload {
  uint32_t flags;
  uint32_t max_header_size;
};

// struct ndis_offload: OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES's answer. Linux
// asks with revision 1 (NDIS 6.0 size), 2 (6.1) or 3 (full) by NVSP version
// and accepts any size from kNdisOffloadSize60 up to what it asked for.
struct NdisOffload {
  NdisObjectHeader header;
  NdisChecksumOffload checksum;
  NdisLsoV1Offload lso_v1;
  NdisIpsecV1Offload ipsec_v1;
  NdisLsoV2Offload lso_v2;
  uint32_t flags;
  NdisIpsecV2Offload ipsec_v2;  // NDIS >= 6.1
  NdisRscOffload rsc;           // NDIS >= 6.30
  NdisEncapsulationOffload encapsulation_gre;
};
static_assert(offsetof(NdisOffload, ipsec_v2) == 112);
static_assert(offsetof(NdisOffload, rsc) == 144);
static_assert(offsetof(NdisOffload, encapsulation_gre) == 148);
static_assert(sizeof(NdisOffload) == 156);
inline constexpr uint32_t kNdisOffloadSize60 = offsetof(NdisOffload, ipsec_v2);
inline constexpr uint32_t kNdisOffloadSize61 = offsetof(NdisOffload, rsc);
inline constexpr uint32_t kNdisOffloadSize = sizeof(NdisOffload);
inline constexpr uint8_t kNdisOffloadRevision1 = 1;
inline constexpr uint8_t kNdisOffloadRevision3 = 3;

// struct ndis_offload_params: OID_TCP_OFFLOAD_PARAMETERS (set). Each u8 is
// 0 "no change", or NDIS_OFFLOAD_PARAMETERS_* (1 = disabled for the checksum,
// LSO and RSC members; checksums: 2 tx only, 3 rx only, 4 both).
struct NdisOffloadParameters {
  NdisObjectHeader header;
  uint8_t ip4_checksum;
  uint8_t tcp4_checksum;
  uint8_t udp4_checksum;
  uint8_t tcp6_checksum;
  uint8_t udp6_checksum;
  uint8_t lso_v1;
  uint8_t ipsec_v1;
  uint8_t lso_v2_ip4;
  uint8_t lso_v2_ip6;
  uint8_t tcp_connection_ip4;
  uint8_t tcp_connection_ip6;
  uint8_t padding;  // natural alignment of flags
  uint32_t flags;
  uint8_t ipsec_v2;
  uint8_t ipsec_v2_ip4;
  uint8_t rsc_ip4;
  uint8_t rsc_ip6;
  uint8_t encapsulated_packet_task_offload;
  uint8_t encapsulation_types;
  uint8_t padding2[2];
};
static_assert(offsetof(NdisOffloadParameters, flags) == 16);
static_assert(offsetof(NdisOffloadParameters, rsc_ip4) == 22);
static_assert(sizeof(NdisOffloadParameters) == 28);
// NVSP <= 4 guests send only this much (VERSION_4_OFFLOAD_SIZE).
inline constexpr uint32_t kNdisOffloadParametersSizeV4 = 22;
inline constexpr uint8_t kOffloadParameterNoChange = 0;
inline constexpr uint8_t kOffloadParameterDisabled = 1;  // TX_RX_DISABLED

// struct ndis_recv_scale_cap (packed): OID_GEN_RECEIVE_SCALE_CAPABILITIES.
#pragma pack(push, 1)
struct NdisReceiveScaleCapabilities {
  NdisObjectHeader header;
  uint32_t capabilities;
  uint32_t interrupt_message_count;
  uint32_t receive_queue_count;
  uint16_t indirection_table_entries;
};
#pragma pack(pop)
static_assert(sizeof(NdisReceiveScaleCapabilities) == 18);

// RNDIS_OID_GEN_RNDIS_CONFIG_PARAMETER's information buffer (how Linux asks
// to change the MAC: parameter "NetworkAddress", a UTF-16 hex string).
struct RndisConfigParameterInfo {
  uint32_t name_offset;  // from the start of this struct
  uint32_t name_length;  // bytes
  uint32_t type;         // 0 integer, 2 string
  uint32_t value_offset;
  uint32_t value_length;
};
static_assert(sizeof(RndisConfigParameterInfo) == 20);

}  // namespace vsp::net

#endif  // HVSTACK_VMWP_VSP_NET_RNDIS_PROTOCOL_H_
