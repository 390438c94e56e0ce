#ifndef HVSTACK_GUEST_UNIXHV_NETVSC_H_
#define HVSTACK_GUEST_UNIXHV_NETVSC_H_

// A netvsc client: the guest side of the synthetic network adapter, from
// Linux's public layouts (drivers/net/hyperv/hyperv_net.h, include/linux/
// rndis.h) and driven the way hv_netvsc drives it: NVSP INIT newest version
// first (min = max), NDIS version and config, a receive buffer and a send
// buffer lent through GPADLs, RNDIS INIT / QUERY / SET as GPA-direct page
// buffers (rndis_filter_send_request), frames in send sections or as
// GPA-direct ranges, receives from transfer-page packets completed with
// SEND_RNDIS_PKT_COMPLETE. Single VP, one request at a time; raw pieces are
// public for the hostile guest.

#include <stddef.h>
#include <stdint.h>

#include "guest/unixhv/vmbus.h"

namespace unixhv::netvsc {

// {f8615163-df3e-46c5-913f-f2d2f965ed0e}
inline constexpr vmbus::Guid kNetType = vmbus::MakeGuid(
    0xf8615163, 0xdf3e, 0x46c5, 0x91, 0x3f, 0xf2, 0xd2, 0xf9, 0x65, 0xed, 0x0e);

// NVSP (hyperv_net.h).
enum NvspType : uint32_t {
  kNvspInit = 1,
  kNvspInitComplete = 2,
  kNvspSendNdisVersion = 100,
  kNvspSendReceiveBuffer = 101,
  kNvspSendReceiveBufferComplete = 102,
  kNvspRevokeReceiveBuffer = 103,
  kNvspSendSendBuffer = 104,
  kNvspSendSendBufferComplete = 105,
  kNvspRevokeSendBuffer = 106,
  kNvspSendRndisPacket = 107,
  kNvspSendRndisPacketComplete = 108,
  kNvspSendNdisConfig = 125,
};
inline constexpr uint32_t kNvspVersions[] = {0x60001, 0x60000, 0x50000,
                                             0x40000, 0x30002, 2};
inline constexpr uint32_t kNvspSuccess = 1;
inline constexpr uint32_t kNvspFail = 2;
inline constexpr uint32_t kNvspInvalidRndis = 5;
inline constexpr uint32_t kNoSection = 0xFFFFFFFF;
inline constexpr uint16_t kReceiveBufferId = 0xCAFE;

// RNDIS (rndis.h).
enum RndisType : uint32_t {
  kRndisPacket = 1,
  kRndisInit = 2,
  kRndisHalt = 3,
  kRndisQuery = 4,
  kRndisSet = 5,
  kRndisReset = 6,
  kRndisIndicate = 7,
  kRndisKeepalive = 8,
  kRndisComplete = 0x80000000,  // | request type
};
inline constexpr uint32_t kRndisSuccess = 0;
inline constexpr uint32_t kRndisNotSupported = 0xC00000BB;
inline constexpr uint32_t kMediaConnect = 0x4001000B;
inline constexpr uint32_t kMediaDisconnect = 0x4001000C;
inline constexpr uint32_t kOidMaximumFrameSize = 0x00010106;
inline constexpr uint32_t kOidLinkSpeed = 0x00010107;
inline constexpr uint32_t kOidPacketFilter = 0x0001010E;
inline constexpr uint32_t kOidMediaConnectStatus = 0x00010114;
inline constexpr uint32_t kOidPermanentAddress = 0x01010101;
inline constexpr uint32_t kOidOffloadCapabilities = 0xFC01020D;
inline constexpr uint32_t kOidOffloadParameters = 0xFC01020C;
inline constexpr uint32_t kFilterDirected = 0x1;
inline constexpr uint32_t kFilterAllMulticast = 0x4;
inline constexpr uint32_t kFilterBroadcast = 0x8;
inline constexpr uint32_t kRndisPacketHeader = 44;  // header + rndis_packet

#pragma pack(push, 1)
struct NvspMessage {  // struct nvsp_message: type + 36-byte body
  uint32_t type;
  uint32_t body[9];
};
static_assert(sizeof(NvspMessage) == 40);
struct TransferPageHeader {
  uint16_t set_id;
  uint8_t sender_owns;
  uint8_t reserved;
  uint32_t range_count;
};
struct TransferPageRange {
  uint32_t byte_count;
  uint32_t byte_offset;
};
#pragma pack(pop)

// How long a request waits for the host's answer. Generous: the host's
// device thread may run on an emulated CPU (nested test hosts).
inline constexpr uint32_t kTimeoutMs = 30000;

struct Config {
  uint32_t ring_pages = 8;      // each way, header included
  uint32_t receive_pages = 32;  // 128 KiB
  uint32_t send_pages = 16;     // 64 KiB
  uint32_t max_nvsp = 0x60001;  // newest NVSP version to offer
};

class Adapter {
 public:
  static constexpr uint32_t kMaxFrame = 9018;
  // Received frames held until taken; Poll leaves the host's packets in the
  // ring while fewer than kBatchRoom slots are free (netvsp sends at most 32
  // frames a packet; Linux takes up to 562).
  static constexpr uint32_t kFrameSlots = 80;
  static constexpr uint32_t kBatchRoom = 64;

  // The whole bring-up as hv_netvsc does it (netvsc_device_add,
  // rndis_filter_device_add, rndis_filter_open). false on failure; step()
  // names the step that failed.
  bool Open(vmbus::Client& bus, const vmbus::Offer& offer,
            const Config& config = {});
  const char* step() const { return step_; }

  // ---- The pieces.
  bool OpenChannel(vmbus::Client& bus, const vmbus::Offer& offer,
                   const Config& config);
  uint32_t Negotiate(uint32_t max_version);  // the version, 0 if none
  // SEND_RECV_BUF / SEND_SEND_BUF naming `gpadl`: the completion's NVSP
  // status (0 on timeout). On success the buffer is in use.
  uint32_t LendReceiveBuffer(uint32_t gpadl, void* base, uint32_t pages);
  uint32_t LendSendBuffer(uint32_t gpadl, void* base, uint32_t pages);
  bool InitializeRndis();
  // One RNDIS request through a GPA-direct page buffer; the response (the
  // whole message) into `response`. false on timeout.
  bool Rndis(const void* request, uint32_t length, void* response,
             uint32_t capacity, uint32_t* response_length,
             uint32_t timeout_ms = kTimeoutMs);
  // QUERY: status; the information buffer into `out`.
  uint32_t Query(uint32_t oid, const void* in, uint32_t in_length, void* out,
                 uint32_t capacity, uint32_t* out_length);
  uint32_t Set(uint32_t oid, const void* data, uint32_t length);

  // ---- Data.
  // Sends one frame (in a send section when it fits, else, or with
  // `gpa_direct`, as GPA-direct ranges) and waits for its completion: the
  // NVSP status (0 on timeout).
  uint32_t SendFrame(const void* frame, uint32_t length,
                     bool gpa_direct = false);
  // The next received frame, copied into `buffer`: its length, or 0 when
  // none came within `timeout_ms`.
  uint32_t ReceiveFrame(void* buffer, uint32_t capacity, uint32_t timeout_ms);

  // ---- Raw access (hostile guest).
  // Sends an NVSP message (with an optional GPA-direct extension) and waits
  // for the completion with the same id: its NVSP status, 0 on timeout.
  uint32_t Request(const NvspMessage& m, const void* extension = nullptr,
                   uint32_t extension_length = 0,
                   uint32_t timeout_ms = kTimeoutMs);
  bool SendRaw(uint16_t type, uint16_t flags, uint64_t trans_id,
               const void* extension, uint32_t extension_length,
               const void* payload, uint32_t length);
  // Handles everything waiting in the inbound ring (completions, receives,
  // indications); completes receives.
  void Poll();
  // The GPA-direct extension for `length` bytes at `address`: one range.
  uint32_t BuildRange(const void* address, uint32_t length, uint8_t* out);
  uint64_t NextId() { return next_id_++; }
  uint8_t* send_buffer() const { return send_buffer_; }
  uint32_t send_sections() const { return send_sections_; }
  uint32_t send_section_size() const { return send_section_size_; }
  vmbus::Channel& channel() { return channel_; }
  vmbus::Client& bus() { return *bus_; }

  uint32_t nvsp_version = 0;
  uint32_t mtu = 0;
  uint8_t mac[6] = {};
  bool link_up = false;
  uint32_t link_up_indications = 0;
  uint32_t link_down_indications = 0;
  uint32_t receive_section_size = 0;
  uint32_t receive_sections = 0;
  uint32_t frames_dropped = 0;  // the frame queue was full
  uint32_t bad_receives = 0;    // what netvsc_receive would refuse
  uint32_t unexpected = 0;      // completions nobody waited for
  // What Poll last saw, for a failure report.
  uint32_t packets_seen = 0;
  uint32_t last_packet_type = 0;
  uint64_t last_trans_id = 0;
  int last_receive_result = 0;

 private:
  void HandleTransferPages(const uint8_t* packet, uint32_t length,
                           uint64_t trans_id);
  bool WaitCompletion(uint64_t id, NvspMessage* out, uint32_t timeout_ms);

  vmbus::Client* bus_ = nullptr;
  vmbus::Channel channel_;
  const char* step_ = "";
  uint64_t next_id_ = 1;
  uint32_t next_rndis_id_ = 1;
  uint8_t* receive_buffer_ = nullptr;
  uint32_t receive_bytes_ = 0;
  uint8_t* send_buffer_ = nullptr;
  uint32_t send_sections_ = 0;
  uint32_t send_section_size_ = 0;
  uint8_t* scratch_ = nullptr;  // one page for RNDIS requests
  // The completion the current request waits for.
  uint64_t wanted_id_ = 0;
  bool have_completion_ = false;
  NvspMessage completion_{};
  // The current RNDIS request's answer.
  uint8_t response_[512];
  uint32_t response_length_ = 0;
  bool have_response_ = false;
  bool waiting_response_ = false;
  // Received frames not yet taken.
  uint8_t frames_[kFrameSlots][kMaxFrame];
  uint32_t frame_lengths_[kFrameSlots] = {};
  uint32_t frame_head_ = 0, frame_count_ = 0;
  uint8_t packet_[4096 + 64];  // an inbound VMBus packet
};

}  // namespace unixhv::netvsc

#endif  // HVSTACK_GUEST_UNIXHV_NETVSC_H_
