#ifndef HVSTACK_VMWP_VMBUS_CHANNEL_MESSAGES_H_
#define HVSTACK_VMWP_VMBUS_CHANNEL_MESSAGES_H_

// VMBus channel-management messages, laid out as Linux's hv_vmbus expects
// them (include/linux/hyperv.h: struct vmbus_channel_*). They travel as SynIC
// message payloads (at most 240 bytes), guest to host through HvPostMessage,
// host to guest through the message slot of the guest's VMBus SINT.

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace vmbus {

inline constexpr size_t kMaxMessageSize = 240;  // HV_MESSAGE_PAYLOAD_BYTE_COUNT

// Protocol versions (major << 16 | minor), VERSION_* in hyperv.h.
inline constexpr uint32_t kVersionWs2008 = (0 << 16) | 13;
inline constexpr uint32_t kVersionWin7 = (1 << 16) | 1;
inline constexpr uint32_t kVersionWin8 = (2 << 16) | 4;
inline constexpr uint32_t kVersionWin8_1 = (3 << 16) | 0;
inline constexpr uint32_t kVersionWin10 = (4 << 16) | 0;
inline constexpr uint32_t kVersionWin10V4_1 = (4 << 16) | 1;
inline constexpr uint32_t kVersionWin10V5 = (5 << 16) | 0;
inline constexpr uint32_t kVersionWin10V5_1 = (5 << 16) | 1;
inline constexpr uint32_t kVersionWin10V5_2 = (5 << 16) | 2;
inline constexpr uint32_t kVersionWin10V5_3 = (5 << 16) | 3;

// Connection ids and the SINT (hyperv_vmbus.h). From V5 on, the guest sends
// INITIATE_CONTACT on connection 4 and then uses the id the host returns.
inline constexpr uint32_t kMessageConnectionId = 1;
inline constexpr uint32_t kMessageConnectionId4 = 4;
inline constexpr uint32_t kEventConnectionId = 2;
inline constexpr uint8_t kVmbusMessageSint = 2;
// The SynIC message type of every VMBus channel message (Linux's
// vmbus_post_msg passes 1).
inline constexpr uint32_t kVmbusMessageType = 1;

enum MessageType : uint32_t {
  kMsgInvalid = 0,
  kMsgOfferChannel = 1,
  kMsgRescindChannelOffer = 2,
  kMsgRequestOffers = 3,
  kMsgAllOffersDelivered = 4,
  kMsgOpenChannel = 5,
  kMsgOpenChannelResult = 6,
  kMsgCloseChannel = 7,
  kMsgGpadlHeader = 8,
  kMsgGpadlBody = 9,
  kMsgGpadlCreated = 10,
  kMsgGpadlTeardown = 11,
  kMsgGpadlTorndown = 12,
  kMsgRelidReleased = 13,
  kMsgInitiateContact = 14,
  kMsgVersionResponse = 15,
  kMsgUnload = 16,
  kMsgUnloadResponse = 17,
  kMsgTlConnectRequest = 21,
  kMsgModifyChannel = 22,
  kMsgTlConnectResult = 23,
  kMsgModifyChannelResponse = 24,
};
const char* MessageTypeName(uint32_t type);

// A GUID as Linux's guid_t: 16 bytes, the first three fields little-endian.
struct Guid {
  std::array<uint8_t, 16> bytes{};
  static Guid FromFields(uint32_t d1, uint16_t d2, uint16_t d3,
                         std::array<uint8_t, 8> d4);
  std::string ToString() const;
  bool operator==(const Guid&) const = default;
};
static_assert(sizeof(Guid) == 16);

#pragma pack(push, 1)

struct MessageHeader {
  uint32_t msgtype;
  uint32_t padding;
};
static_assert(sizeof(MessageHeader) == 8);

struct InitiateContact {
  MessageHeader header;
  uint32_t vmbus_version_requested;
  uint32_t target_vcpu;
  // Before V5: the guest's interrupt page GPA. From V5: byte 0 is the SINT
  // the host must post messages to, byte 1 the VTL.
  uint64_t interrupt_page_or_sint;
  uint64_t monitor_page1;
  uint64_t monitor_page2;
};
static_assert(sizeof(InitiateContact) == 40);
static_assert(offsetof(InitiateContact, interrupt_page_or_sint) == 16);

struct VersionResponse {
  MessageHeader header;
  uint8_t version_supported;
  uint8_t connection_state;
  uint16_t padding;
  uint32_t msg_conn_id;
};
static_assert(sizeof(VersionResponse) == 16);

struct ChannelOffer {
  Guid if_type;
  Guid if_instance;
  uint64_t reserved1;
  uint64_t reserved2;
  uint16_t chn_flags;
  uint16_t mmio_megabytes;
  uint8_t user_def[120];  // or pipe_mode (u32) + 116 bytes for pipes
  uint16_t sub_channel_index;
  uint16_t reserved3;
};
static_assert(sizeof(ChannelOffer) == 176);
static_assert(offsetof(ChannelOffer, chn_flags) == 48);
static_assert(offsetof(ChannelOffer, sub_channel_index) == 172);

struct OfferChannel {
  MessageHeader header;
  ChannelOffer offer;
  uint32_t child_relid;
  uint8_t monitorid;
  uint8_t monitor_allocated;        // bit 0
  uint16_t is_dedicated_interrupt;  // bit 0
  uint32_t connection_id;
};
static_assert(sizeof(OfferChannel) == 196);
static_assert(offsetof(OfferChannel, child_relid) == 184);
static_assert(offsetof(OfferChannel, connection_id) == 192);

struct RescindChannelOffer {
  MessageHeader header;
  uint32_t child_relid;
};
static_assert(sizeof(RescindChannelOffer) == 12);

struct OpenChannel {
  MessageHeader header;
  uint32_t child_relid;
  uint32_t openid;
  uint32_t ringbuffer_gpadlhandle;
  uint32_t target_vp;
  uint32_t downstream_ringbuffer_pageoffset;
  uint8_t userdata[120];
};
static_assert(sizeof(OpenChannel) == 148);
static_assert(offsetof(OpenChannel, downstream_ringbuffer_pageoffset) == 24);

struct OpenChannelResult {
  MessageHeader header;
  uint32_t child_relid;
  uint32_t openid;
  uint32_t status;
};
static_assert(sizeof(OpenChannelResult) == 20);

struct CloseChannel {
  MessageHeader header;
  uint32_t child_relid;
};
static_assert(sizeof(CloseChannel) == 12);

struct GpaRangeHeader {  // struct gpa_range without its pfn_array
  uint32_t byte_count;
  uint32_t byte_offset;
};
static_assert(sizeof(GpaRangeHeader) == 8);

struct GpadlHeader {  // followed by the first range_buflen bytes that fit
  MessageHeader header;
  uint32_t child_relid;
  uint32_t gpadl;
  uint16_t range_buflen;  // bytes of all ranges, across header and bodies
  uint16_t rangecount;
};
static_assert(sizeof(GpadlHeader) == 20);

struct GpadlBody {  // followed by PFNs (u64)
  MessageHeader header;
  uint32_t msgnumber;
  uint32_t gpadl;
};
static_assert(sizeof(GpadlBody) == 16);

struct GpadlCreated {
  MessageHeader header;
  uint32_t child_relid;
  uint32_t gpadl;
  uint32_t creation_status;
};
static_assert(sizeof(GpadlCreated) == 20);

struct GpadlTeardown {
  MessageHeader header;
  uint32_t child_relid;
  uint32_t gpadl;
};
static_assert(sizeof(GpadlTeardown) == 16);

struct GpadlTorndown {
  MessageHeader header;
  uint32_t gpadl;
};
static_assert(sizeof(GpadlTorndown) == 12);

struct RelidReleased {
  MessageHeader header;
  uint32_t child_relid;
};
static_assert(sizeof(RelidReleased) == 12);

struct Unload {
  MessageHeader header;
};
struct UnloadResponse {
  MessageHeader header;
};
struct RequestOffers {
  MessageHeader header;
};
struct AllOffersDelivered {
  MessageHeader header;
};

struct TlConnectRequest {
  MessageHeader header;
  Guid guest_endpoint_id;
  Guid host_service_id;
};
static_assert(sizeof(TlConnectRequest) == 40);

struct ModifyChannel {
  MessageHeader header;
  uint32_t child_relid;
  uint32_t target_vp;
};
static_assert(sizeof(ModifyChannel) == 16);

struct ModifyChannelResponse {
  MessageHeader header;
  uint32_t child_relid;
  uint32_t status;
};
static_assert(sizeof(ModifyChannelResponse) == 16);

#pragma pack(pop)

// GPADL_HEADER with the range bytes it carried (a prefix of range_buflen).
struct GpadlHeaderMessage {
  GpadlHeader fixed;
  std::vector<uint8_t> range_bytes;
};
// GPADL_BODY with its PFNs.
struct GpadlBodyMessage {
  GpadlBody fixed;
  std::vector<uint64_t> pfns;
};

// Every message a guest may send.
using GuestMessage =
    std::variant<InitiateContact, RequestOffers, OpenChannel, CloseChannel,
                 GpadlHeaderMessage, GpadlBodyMessage, GpadlTeardown,
                 RelidReleased, Unload, ModifyChannel, TlConnectRequest>;

// Parses one guest-to-host message. Rejects (InvalidArgument) unknown types,
// host-to-guest types, and sizes that do not match the type: fixed-size
// messages must be exactly their size (INITIATE_CONTACT may be longer, later
// protocol versions extend it); GPADL messages must carry whole 8-byte units
// and at least one.
absl::StatusOr<GuestMessage> ParseGuestMessage(std::span<const uint8_t> bytes);

// Host-to-guest messages are sent as their raw bytes.
template <typename T>
std::vector<uint8_t> MessageBytes(const T& message) {
  static_assert(sizeof(T) <= kMaxMessageSize);
  std::vector<uint8_t> out(sizeof(T));
  std::memcpy(out.data(), &message, sizeof(T));
  return out;
}

// A zeroed message of type T with its header set.
template <typename T>
T MakeMessage(MessageType type) {
  T message{};  // packed, no hidden padding: every byte is zero
  message.header.msgtype = type;
  return message;
}

}  // namespace vmbus

#endif  // HVSTACK_VMWP_VMBUS_CHANNEL_MESSAGES_H_
