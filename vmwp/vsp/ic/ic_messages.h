#ifndef HVSTACK_VMWP_VSP_IC_IC_MESSAGES_H_
#define HVSTACK_VMWP_VSP_IC_IC_MESSAGES_H_

// Integration-component messages as Linux's hv_utils reads them
// (include/linux/hyperv.h: vmbuspipe_hdr, icmsg_hdr, icmsg_negotiate,
// heartbeat/shutdown/timesync data; include/uapi/linux/hyperv.h: hv_kvp_*).
// Every IC packet is VM_PKT_DATA_INBAND: pipe header, IC header, body.

#include <cstddef>
#include <cstdint>

#include "vmwp/vmbus/channel_messages.h"

namespace vsp::ic {

#pragma pack(push, 1)

struct PipeHeader {
  uint32_t flags;
  uint32_t msgsize;  // bytes after this header
};
static_assert(sizeof(PipeHeader) == 8);

struct IcVersion {
  uint16_t major;
  uint16_t minor;
  bool operator==(const IcVersion&) const = default;
};
static_assert(sizeof(IcVersion) == 4);

struct IcMsgHeader {
  IcVersion icverframe;
  uint16_t icmsgtype;
  IcVersion icvermsg;
  uint16_t icmsgsize;
  uint32_t status;  // HRESULT
  uint8_t ictransaction_id;
  uint8_t icflags;
  uint8_t reserved[2];
};
static_assert(sizeof(IcMsgHeader) == 20);
static_assert(offsetof(IcMsgHeader, icmsgtype) == 4);
static_assert(offsetof(IcMsgHeader, status) == 12);
static_assert(offsetof(IcMsgHeader, icflags) == 17);

inline constexpr size_t kIcHeadersSize =
    sizeof(PipeHeader) + sizeof(IcMsgHeader);  // ICMSG_HDR
static_assert(kIcHeadersSize == 28);

struct IcNegotiate {  // followed by icframe_vercnt + icmsg_vercnt IcVersions
  uint16_t icframe_vercnt;
  uint16_t icmsg_vercnt;
  uint32_t reserved;
};
static_assert(sizeof(IcNegotiate) == 8);

struct HeartbeatData {
  uint64_t seq_num;
  uint32_t reserved[8];
};
static_assert(sizeof(HeartbeatData) == 40);

struct ShutdownData {
  uint32_t reason_code;
  uint32_t timeout_seconds;
  uint32_t flags;
  uint8_t display_message[2048];
};
static_assert(sizeof(ShutdownData) == 2060);

struct TimeSyncData {  // service versions before 4.0
  uint64_t parenttime;
  uint64_t childtime;
  uint64_t roundtriptime;
  uint8_t flags;
};
static_assert(sizeof(TimeSyncData) == 25);

struct TimeSyncRefData {  // service version 4.0
  uint64_t parenttime;
  uint64_t vmreferencetime;
  uint8_t flags;
  int8_t leapflags;
  int8_t stratum;
  uint8_t reserved[3];
};
static_assert(sizeof(TimeSyncRefData) == 22);

inline constexpr size_t kKvpMaxKeySize = 512;     // bytes, UTF-16, with NUL
inline constexpr size_t kKvpMaxValueSize = 2048;  // bytes

struct KvpHeader {
  uint8_t operation;
  uint8_t pool;
  uint16_t pad;
};
static_assert(sizeof(KvpHeader) == 4);

struct KvpExchangeValue {
  uint32_t value_type;
  uint32_t key_size;
  uint32_t value_size;
  uint8_t key[kKvpMaxKeySize];
  uint8_t value[kKvpMaxValueSize];
};
static_assert(sizeof(KvpExchangeValue) == 2572);
static_assert(offsetof(KvpExchangeValue, value) == 524);

struct KvpIpAddrValue {
  uint16_t adapter_id[128];
  uint8_t addr_family;
  uint8_t dhcp_enabled;
  uint16_t ip_addr[1024];
  uint16_t sub_net[1024];
  uint16_t gate_way[512];
  uint16_t dns_addr[1024];
};
static_assert(sizeof(KvpIpAddrValue) == 7426);

// struct hv_kvp_msg: header, then one of get/set (KvpExchangeValue),
// delete (key_size + key), enumerate (index + KvpExchangeValue), IP info.
struct KvpMessage {
  KvpHeader header;
  union {
    KvpExchangeValue get_set;
    struct {
      uint32_t key_size;
      uint8_t key[kKvpMaxKeySize];
    } del;
    struct {
      uint32_t index;
      KvpExchangeValue data;
    } enumerate;
    KvpIpAddrValue ip;
  } body;
};
static_assert(sizeof(KvpMessage) == 7430);
static_assert(offsetof(KvpMessage, body) == 4);

#pragma pack(pop)

// icmsgtype.
enum IcMessageType : uint16_t {
  kIcNegotiate = 0,
  kIcHeartbeat = 1,
  kIcKvpExchange = 2,
  kIcShutdown = 3,
  kIcTimeSync = 4,
  kIcVss = 5,
  kIcFcopy = 7,
};

// icflags.
inline constexpr uint8_t kIcFlagTransaction = 1;
inline constexpr uint8_t kIcFlagRequest = 2;
inline constexpr uint8_t kIcFlagResponse = 4;

// HRESULTs in icmsg_hdr.status (uapi hyperv.h).
inline constexpr uint32_t kHvSOk = 0x00000000;
inline constexpr uint32_t kHvEFail = 0x80004005;
inline constexpr uint32_t kHvSCont = 0x80070103;
inline constexpr uint32_t kHvErrorNotSupported = 0x80070032;

// Versions hv_utils negotiates (hv_util.c, hv_kvp.c), newest first.
inline constexpr IcVersion kFrameworkVersions[] = {{3, 0}, {1, 0}};
inline constexpr IcVersion kHeartbeatVersions[] = {{3, 0}, {1, 0}};
inline constexpr IcVersion kShutdownVersions[] = {
    {3, 2}, {3, 1}, {3, 0}, {1, 0}};
inline constexpr IcVersion kTimeSyncVersions[] = {{4, 0}, {3, 0}, {1, 0}};
inline constexpr IcVersion kKvpVersions[] = {{4, 0}, {3, 0}, {1, 0}};

// Offer GUIDs (hyperv.h HV_*_GUID).
inline vmbus::Guid HeartbeatGuid() {
  return vmbus::Guid::FromFields(
      0x57164f39, 0x9115, 0x4e78,
      {0xab, 0x55, 0x38, 0x2f, 0x3b, 0xd5, 0x42, 0x2d});
}
inline vmbus::Guid ShutdownGuid() {
  return vmbus::Guid::FromFields(
      0x0e0b6031, 0x5213, 0x4934,
      {0x81, 0x8b, 0x38, 0xd9, 0x0c, 0xed, 0x39, 0xdb});
}
inline vmbus::Guid TimeSyncGuid() {
  return vmbus::Guid::FromFields(
      0x9527e630, 0xd0ae, 0x497b,
      {0xad, 0xce, 0xe8, 0x0a, 0xb0, 0x17, 0x5c, 0xaf});
}
inline vmbus::Guid KvpGuid() {
  return vmbus::Guid::FromFields(
      0xa9a0f4e7, 0x5a45, 0x4d96,
      {0xb8, 0x27, 0x8a, 0x84, 0x1e, 0x8c, 0x03, 0xe6});
}

}  // namespace vsp::ic

#endif  // HVSTACK_VMWP_VSP_IC_IC_MESSAGES_H_
